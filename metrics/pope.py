"""POPE (Li et al., EMNLP 2023, arXiv 2305.10355): yes/no object probing, scored per split.

Metric (positive = "yes"), over the questions of one split:
    accuracy = (TP+TN)/N, precision = TP/(TP+FP), recall = TP/(TP+FN), F1 = 2PR/(P+R),
    yes_ratio = #predicted yes / N   (from predictions — lmms-eval computes it from the labels, a bug).

Answer parsers (free text → yes/no), each a named function in ``PARSERS``:
* ``official`` — ``AoiDragon/POPE@08d957b:evaluate.py`` (LLaVA's ``llava/eval/eval_pope.py``, HA-DPO,
  POVID and EasyDetect are identical): keep the text before the first ``.``, drop commas, split on
  single spaces; *no* iff one of the words is exactly ``No``, ``not`` or ``no``; everything else
  (empty, "NO", "Nope", "isn't") is *yes*.
* ``opera`` — ``shikiw/OPERA@61426ef:pope_eval.py`` (``recorder``): drop every ``.`` and ``,`` (no
  first-sentence cut), split on single spaces; *no* iff a word is ``No``/``not``/``no``/``NO`` or
  ends with ``n't``.
* ``exact`` — ``lmms-eval@75571cf:tasks/pope/utils.py``: ``text.lower().strip()`` compared with
  ``yes``/``no``; anything else is *neither* (wrong for accuracy, excluded from P/R).

Deliberate deviations from the references (documented, tested):
* Zero divisions: the references crash (``ZeroDivisionError``) when a split has no predicted yes;
  here the undefined metric is 0.0 and its name is listed under ``zero_division``.
* Answers are joined to questions by ``question_id`` (the references zip by file position); a
  missing answer is reported under ``skipped`` and counted as wrong (parsed from ""), never
  silently shifted.

Protocols (registered in ``bench.registry.BENCHMARKS``): ``pope`` (v3 files, raw question,
official parser, greedy, 512 new tokens — HA-DPO's setting), ``pope-v1`` (LLaVA-1.5's 2910-question
random split), ``pope-llava15`` (v1 + "Answer the question using a single word or phrase.",
headline = mean F1 over the splits, as the LLaVA-1.5 paper), ``pope-hadpo`` (= ``pope``, reported
truncated to 2 decimals by HA-DPO), ``pope-opera`` (OPERA parser, 10 new tokens), ``pope-lmms``
(exact parser, suffix, 128 new tokens). Bootstrap CIs resample images (all questions of an image
together).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from bench.benchmark import Benchmark, EvalItem, GenerationSettings
from bench.errors import DataError
from bench.io import iter_jsonl
from bench.registry import BENCHMARKS
from bench.stats import bootstrap_ci

SPLITS = ("random", "popular", "adversarial")
SUFFIX_ONE_WORD = "\nAnswer the question using a single word or phrase."
# sha256 of the real question files (AoiDragon/POPE), see shared/reference/pope/SOURCES.md
KNOWN_SHA256 = {
    "v3": {"random": "ac25245170b975a5bdf9080b23fd431dfe6be458bc038259c1f4f09a6bef7994",
           "popular": "72c1a8ad45d0c13514f5f22598261df41d3b533854d29682e924db50ed8aa753",
           "adversarial": "420b3407db1fa9f1187a805dca41cb7b97fd91504e6c2179706188c107fb8ef8"},
    "v1": {"random": "c16b65d2df6d70bb0814c8a4375833d39cdb09928fd936d3fc546491efa37f35",
           "popular": "5b16653023bf4f64d57eb0d168259de6627f5cde7538b85ebed3cc33034aa6cc",
           "adversarial": "1d8f0906a9b50c05640f6f23abfac97523be2a1bed28f7eadc63b811699b2d26"},
}


def question_file_version(path: Path) -> str | None:
    """``v3``/``v1`` when ``path`` is a real POPE question file, else None (e.g. the synthetic world)."""
    from bench.io import sha256_file

    digest = sha256_file(path)
    for version, files in KNOWN_SHA256.items():
        if digest in files.values():
            return version
    return None


def parse_official(text: str) -> str:
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def parse_opera(text: str) -> str:
    words = text.replace(".", "").replace(",", "").split(" ")
    if any(w in ("No", "not", "no", "NO") or w.endswith("n't") for w in words):
        return "no"
    return "yes"


def parse_exact(text: str) -> str:
    """``yes``/``no`` for an exact (case-insensitive, stripped) match, else ``other``."""
    t = text.lower().strip()
    return t if t in ("yes", "no") else "other"


PARSERS: dict[str, Callable[[str], str]] = {"official": parse_official, "opera": parse_opera, "exact": parse_exact}


def confusion(labels: list[str], preds: list[str]) -> dict[str, int]:
    """Counts with positive = yes; predictions other than yes/no fall in ``other``."""
    c = {"TP": 0, "FP": 0, "TN": 0, "FN": 0, "other": 0}
    for lab, pred in zip(labels, preds):
        if pred == "yes":
            c["TP" if lab == "yes" else "FP"] += 1
        elif pred == "no":
            c["TN" if lab == "no" else "FN"] += 1
        else:
            c["other"] += 1
    return c


def metrics_from_confusion(c: dict[str, int], n: int | None = None, yes_ratio_from: str = "predictions",
                           n_label_yes: int | None = None) -> dict[str, Any]:
    """accuracy, precision, recall, f1, yes_ratio; undefined ratios are 0.0 and listed in ``zero_division``.

    ``n`` is the number of questions (defaults to all counted answers incl. ``other``); with the
    ``exact`` parser accuracy is over all questions, P/R over yes/no answers only (as lmms-eval).
    ``yes_ratio_from="labels"`` reproduces lmms-eval's bug (needs ``n_label_yes``) for parity only.
    """
    tp, fp, tn, fn = c["TP"], c["FP"], c["TN"], c["FN"]
    n = n if n is not None else tp + fp + tn + fn + c.get("other", 0)
    zero: list[str] = []

    def div(a: float, b: float, name: str) -> float:
        if b == 0:
            zero.append(name)
            return 0.0
        return a / b

    precision = div(tp, tp + fp, "precision")
    recall = div(tp, tp + fn, "recall")
    f1 = div(2 * precision * recall, precision + recall, "f1")
    accuracy = div(tp + tn, n, "accuracy")
    if yes_ratio_from == "labels":
        yes_ratio = div(n_label_yes or 0, n, "yes_ratio")
    else:
        yes_ratio = div(tp + fp, n, "yes_ratio")
    return {"accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1, "yes_ratio": yes_ratio,
            "zero_division": zero}


def score_split(labels: list[str], texts: list[str], parser: str = "official") -> dict[str, Any]:
    preds = [PARSERS[parser](t) for t in texts]
    c = confusion(labels, preds)
    return {"confusion": c, **metrics_from_confusion(c, n=len(labels)), "preds": preds}


def read_questions(path: Path) -> list[dict]:
    """POPE question file (JSON Lines despite the .json suffix); fields validated per line."""
    rows = []
    for line, rec in iter_jsonl(path):
        for key in ("question_id", "image", "text", "label"):
            if key not in rec:
                raise DataError(path, "missing field", line=line, field=key)
        if rec["label"] not in ("yes", "no"):
            raise DataError(path, f"label must be 'yes' or 'no', got {rec['label']!r}", line=line, field="label")
        rows.append(rec)
    return rows


class PopeProtocol(Benchmark):
    """POPE (v3 question files, official parser, raw question, greedy, 512 new tokens)."""

    name = "pope"
    benchmark = "pope"
    version = "3"
    description = "POPE v3 (3 splits, official AoiDragon/POPE parser, raw question, greedy, 512 tokens)"
    generation = GenerationSettings(max_new_tokens=512)
    params: dict[str, Any] = {"question_version": "v3", "splits": list(SPLITS), "parser": "official", "suffix": "",
                              "aggregate": "per_split", "report_rounding": "round"}
    headline = {"adversarial/accuracy": ("POPE-adv acc", True), "adversarial/f1": ("POPE-adv F1", True),
                "random/accuracy": ("POPE-rand acc", True), "mean/f1": ("POPE mean F1", True)}

    def question_file(self, data_root: Path, split: str) -> Path:
        return Path(data_root) / "pope" / self.params["question_version"] / f"coco_pope_{split}.json"

    def data_files(self, data_root: Path) -> list[Path]:
        return [self.question_file(data_root, s) for s in self.params["splits"]]

    def items(self, data_root: Path) -> list[EvalItem]:
        out = []
        for split in self.params["splits"]:
            for q in read_questions(self.question_file(data_root, split)):
                out.append(EvalItem(f"{split}/{q['question_id']}", str(Path(data_root) / "coco" / "val2014" / q["image"]),
                                    q["text"] + self.params["suffix"],
                                    {"split": split, "label": q["label"], "image_key": q["image"]}))
        return out

    def score(self, predictions: list[dict], data_root: Path, n_boot: int = 1000, limit: int | None = None) -> dict:
        parser = self.params["parser"]
        texts = {p["id"]: p["text"] for p in predictions}
        items = self.items(data_root)
        if limit is not None:
            items = items[:limit]
        missing = [it.id for it in items if it.id not in texts]
        rows = [{"id": it.id, "split": it.meta["split"], "image": it.meta["image_key"], "label": it.meta["label"],
                 "pred": PARSERS[parser](texts.get(it.id, ""))} for it in items]
        metrics: dict[str, float] = {}
        zero: dict[str, list[str]] = {}

        def stat(sample_rows: list[dict]) -> dict[str, float]:
            out: dict[str, float] = {}
            f1s = []
            for split in self.params["splits"]:
                rs = [r for r in sample_rows if r["split"] == split]
                if not rs:
                    continue
                m = metrics_from_confusion(confusion([r["label"] for r in rs], [r["pred"] for r in rs]), n=len(rs))
                for k in ("accuracy", "precision", "recall", "f1", "yes_ratio"):
                    out[f"{split}/{k}"] = m[k]
                f1s.append(m["f1"])
            if f1s:
                out["mean/f1"] = sum(f1s) / len(f1s)
            return out

        confusions = {}
        for split in self.params["splits"]:
            rs = [r for r in rows if r["split"] == split]
            if rs:
                c = confusion([r["label"] for r in rs], [r["pred"] for r in rs])
                confusions[split] = c
                zero_div = metrics_from_confusion(c, n=len(rs))["zero_division"]
                if zero_div:
                    zero[split] = zero_div
        metrics = stat(rows)
        by_image: dict[str, list[dict]] = {}
        for r in rows:
            by_image.setdefault(r["image"], []).append(r)
        units = list(by_image.values())
        ci = bootstrap_ci(units, lambda us: stat([r for u in us for r in u]), n_boot=n_boot, seed=0)
        files = {}
        for split in self.params["splits"]:
            path = self.question_file(data_root, split)
            version = question_file_version(path)
            files[split] = {"file": path.name, "real_pope_version": version}
            if version is not None and version != self.params["question_version"]:
                raise DataError(path, f"this is the POPE {version} question file but protocol {self.name!r} expects"
                                      f" {self.params['question_version']}; never mix versions")
        return {"metrics": metrics, "ci": ci, "n": len(rows), "confusion": confusions, "zero_division": zero,
                "question_files": files, "parser": parser,
                "skipped": {"count": len(missing), "reasons": {i: "no prediction (scored as empty answer)"
                                                               for i in missing}},
                "details": {"per_item": [{"id": r["id"], "label": r["label"], "pred": r["pred"]} for r in rows]}}


def _protocol(name: str, description: str, version: str, generation: GenerationSettings, **params: Any) -> type:
    headline = dict(PopeProtocol.headline)
    cls = type(f"Pope_{name.replace('-', '_')}", (PopeProtocol,), {
        "name": name, "description": description, "version": version, "generation": generation,
        "params": {**PopeProtocol.params, **params}, "headline": headline,
        "__doc__": description})
    BENCHMARKS.add(name, cls)
    return cls


BENCHMARKS.add("pope", PopeProtocol)
_protocol("pope-v1", "POPE v1 (LLaVA-1.5's e3e3926 files: 2910 random questions), official parser", "1",
          GenerationSettings(max_new_tokens=512), question_version="v1")
_protocol("pope-llava15", "POPE as LLaVA-1.5 reports it: v1 files, one-word suffix, mean F1 over splits", "1",
          GenerationSettings(max_new_tokens=128), question_version="v1", suffix=SUFFIX_ONE_WORD,
          aggregate="mean_f1")
_protocol("pope-hadpo", "POPE as HA-DPO's README: v3, raw question, 512 tokens, official parser, truncated to 2 dp",
          "3", GenerationSettings(max_new_tokens=512), report_rounding="truncate2")
_protocol("pope-opera", "POPE with OPERA's parser (n't counts as no), 10 new tokens", "3",
          GenerationSettings(max_new_tokens=10), parser="opera")
_protocol("pope-lmms", "POPE as lmms-eval: one-word suffix, exact yes/no match, 128 tokens", "3",
          GenerationSettings(max_new_tokens=128), parser="exact", suffix=SUFFIX_ONE_WORD)
