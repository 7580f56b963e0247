"""POPE (Li et al., EMNLP 2023, arXiv 2305.10355): yes/no object probing, scored per split.

Metric, per split, positive class = "yes" (``AoiDragon/POPE@08d957b:evaluate.py``):

    TP, FP, TN, FN over the answers;   accuracy  = (TP + TN) / N
    precision = TP / (TP + FP)          recall    = TP / (TP + FN)
    F1        = 2·P·R / (P + R)         yes_ratio = (TP + FP) / N      (from the *predictions*)

``N`` counts every scored answer, including answers the ``exact`` parser can place in neither class
(``other``: wrong for accuracy, in no cell of the confusion matrix, so outside P/R — lmms-eval's rule).

Answer parsers (free text → ``"yes"``/``"no"``, ``exact`` also ``"other"``), named functions in ``PARSERS``:

* ``official`` — ``AoiDragon/POPE@08d957b:evaluate.py``; LLaVA's ``llava/eval/eval_pope.py`` (copies in
  HA-DPO, POVID, EasyDetect, less-is-more) applies the same rule. If the text contains a ``.`` only the
  part before the first ``.`` is kept; commas are deleted; the text is split on single spaces (so tabs
  and newlines stay inside words); the answer is *no* iff one word is exactly ``No``, ``not`` or ``no``,
  else *yes* — so ``""``, ``"NO"``, ``"Nope"``, ``"isn't"`` all count as *yes*.
* ``opera`` — ``shikiw/OPERA@61426ef:pope_eval.py`` (``recorder``): every ``.`` and ``,`` deleted (no
  first-sentence cut), single-space split, *no* iff a word is ``No``/``not``/``no``/``NO`` or ends in
  ``n't``.
* ``exact`` — ``EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/pope/utils.py``: ``text.lower().strip()``
  compared with ``yes`` / ``no``; anything else is ``other`` and counted (``confusion()["other"]``).

Deliberate deviations from the references (all tested):

* Zero division: the three scripts raise ``ZeroDivisionError`` (e.g. a split without a single predicted
  yes); here an undefined ratio is **0.0** and its name is listed in the result's ``zero_division``
  (``metrics_from_confusion``). lmms-eval's guarded aggregates also return 0, so its numbers are kept.
* Joining: the references zip answers with questions by file position. :func:`join_answers` matches
  them by ``question_id`` and reports unanswered questions, unknown ids and duplicates instead of
  shifting; only when the answers carry no ``question_id`` at all does it fall back to position, and it
  says so (``mode == "position"``). The protocols join predictions to items by item id.
* yes_ratio comes from the predictions. lmms-eval computes it from the labels (a bug, always 0.5 on
  balanced files); ``yes_ratio_from="labels"`` reproduces that number for the parity check only.
* A question without a prediction is *skipped* (not scored, listed under ``skipped``), never scored as
  if it were an empty answer. An empty generation is scored as the parser reads it (``official``: yes)
  and listed by id under ``empty_generations``.

Protocols (``bench.registry.BENCHMARKS``; one declaration each at the end of this module; choices from
``shared/research/benchmarks.md`` §1.4): ``pope`` (v3 files, raw question, official parser, greedy, 512
new tokens — HA-DPO's evaluation), ``pope-v1`` (the same on the v1 files LLaVA-1.5 used: 2910 random
questions), ``pope-llava15`` (v1 files + LLaVA's one-word suffix, 128 tokens, headline = mean F1 of the
three splits), ``pope-hadpo`` (= ``pope``; HA-DPO's README truncates to 2 decimals — full precision is
stored, ``params["report_rounding"] = "truncate2"`` tells the leaderboard), ``pope-opera`` (OPERA's parser,
10 new tokens), ``pope-lmms`` (exact parser + suffix, 128 tokens, per split). Every protocol records the
sha256 of the real question files of its version in ``params["question_sha256"]``; scoring refuses the
other version's real files and labels any other file (e.g. the synthetic world) as unrecognised.
Bootstrap CIs (:func:`bench.stats.bootstrap_ci`) resample images: all questions of one image file, in
every split, move together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from bench.benchmark import Benchmark, EvalItem, GenerationSettings
from bench.errors import DataError
from bench.io import iter_jsonl, sha256_file
from bench.registry import BENCHMARKS
from bench.stats import bootstrap_ci

SPLITS = ("random", "popular", "adversarial")
SUFFIX_ONE_WORD = "\nAnswer the question using a single word or phrase."
METRIC_KEYS = ("accuracy", "precision", "recall", "f1", "yes_ratio")
CELLS = ("TP", "FP", "TN", "FN", "other")

# sha256 of the real question files (AoiDragon/POPE; shared/reference/pope/SOURCES.md):
# v3 = HEAD 08d957b, v1 = e3e3926 (LLaVA-1.5 / OPERA / OPA-DPO).
KNOWN_SHA256: dict[str, dict[str, str]] = {
    "v3": {"random": "ac25245170b975a5bdf9080b23fd431dfe6be458bc038259c1f4f09a6bef7994",
           "popular": "72c1a8ad45d0c13514f5f22598261df41d3b533854d29682e924db50ed8aa753",
           "adversarial": "420b3407db1fa9f1187a805dca41cb7b97fd91504e6c2179706188c107fb8ef8"},
    "v1": {"random": "c16b65d2df6d70bb0814c8a4375833d39cdb09928fd936d3fc546491efa37f35",
           "popular": "5b16653023bf4f64d57eb0d168259de6627f5cde7538b85ebed3cc33034aa6cc",
           "adversarial": "1d8f0906a9b50c05640f6f23abfac97523be2a1bed28f7eadc63b811699b2d26"},
}
KNOWN_ROWS = {"v3": {"random": 3000, "popular": 3000, "adversarial": 3000},
              "v1": {"random": 2910, "popular": 3000, "adversarial": 3000}}


# ---------------------------------------------------------------------------------------------- parsers
def parse_official(text: str) -> str:
    """AoiDragon/POPE ``evaluate.py`` (= LLaVA ``eval_pope.py``): first sentence, no commas, 'No'/'not'/'no'."""
    if "." in text:
        text = text[: text.index(".")]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


_OPERA_NEG = frozenset(("No", "not", "no", "NO"))


def parse_opera(text: str) -> str:
    """OPERA ``pope_eval.py`` ``recorder``: no '.'/',' at all, then a negative word or a word ending in n't."""
    for word in text.replace(".", "").replace(",", "").split(" "):
        if word in _OPERA_NEG or word.endswith("n't"):
            return "no"
    return "yes"


def normalise_exact(text: str) -> str:
    """What lmms-eval compares with 'yes'/'no' (its ``pope_process_results``)."""
    return text.lower().strip()


def parse_exact(text: str) -> str:
    """``yes``/``no`` for an exact case-insensitive, stripped match; anything else is ``other``."""
    t = normalise_exact(text)
    return t if t == "yes" or t == "no" else "other"


PARSERS: dict[str, Callable[[str], str]] = {"official": parse_official, "opera": parse_opera, "exact": parse_exact}


# ---------------------------------------------------------------------------------------------- metric
def confusion(labels: Sequence[str], preds: Sequence[str]) -> dict[str, int]:
    """TP/FP/TN/FN with positive = yes; a prediction that is neither yes nor no counts in ``other``.

    ``labels`` and ``preds`` are aligned lists (use :func:`join_answers` to align them); a length
    mismatch raises ``ValueError`` rather than being zipped silently.
    """
    if len(labels) != len(preds):
        raise ValueError(f"{len(preds)} predictions for {len(labels)} labels")
    c = {k: 0 for k in CELLS}
    for lab, pred in zip(labels, preds):
        if lab not in ("yes", "no"):
            raise ValueError(f"label must be 'yes' or 'no', got {lab!r}")
        if pred == "yes":
            c["TP" if lab == "yes" else "FP"] += 1
        elif pred == "no":
            c["FN" if lab == "yes" else "TN"] += 1
        else:
            c["other"] += 1
    return c


def metrics_from_confusion(c: dict[str, int], n: int | None = None, yes_ratio_from: str = "predictions",
                           n_label_yes: int | None = None) -> dict[str, Any]:
    """accuracy, precision, recall, f1, yes_ratio from a confusion dict, with an explicit guard.

    Zero-division guard: a ratio whose denominator is 0 is reported as ``0.0`` and its name is appended
    to ``zero_division`` (the references crash there; lmms-eval returns 0). ``n`` defaults to every
    counted answer, ``other`` included. ``yes_ratio_from="labels"`` (needs ``n_label_yes``) reproduces
    lmms-eval's label-based yes-ratio for parity checks only; protocols use the predictions.
    """
    tp, fp, tn, fn = c["TP"], c["FP"], c["TN"], c["FN"]
    if n is None:
        n = tp + fp + tn + fn + c.get("other", 0)
    zero: list[str] = []

    def div(num: float, den: float, name: str) -> float:
        if den == 0:
            zero.append(name)
            return 0.0
        return num / den

    precision = div(tp, tp + fp, "precision")
    recall = div(tp, tp + fn, "recall")
    f1 = div(2 * precision * recall, precision + recall, "f1")
    accuracy = div(tp + tn, n, "accuracy")
    if yes_ratio_from == "labels":
        if n_label_yes is None:
            raise ValueError("yes_ratio_from='labels' needs n_label_yes")
        yes_ratio = div(n_label_yes, n, "yes_ratio")
    elif yes_ratio_from == "predictions":
        yes_ratio = div(tp + fp, n, "yes_ratio")
    else:
        raise ValueError(f"yes_ratio_from must be 'predictions' or 'labels', got {yes_ratio_from!r}")
    return {"accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1, "yes_ratio": yes_ratio,
            "n": n, "zero_division": zero}


def reference_printout(c: dict[str, int], m: dict[str, Any] | None, llava_line: bool = False) -> str:
    """The stdout of ``evaluate.py`` / OPERA ``print_acc`` (+ LLaVA's 3-decimal line with ``llava_line``).

    With ``m`` None (a reference that crashed on a zero division) only the confusion lines, which the
    scripts print before dividing.
    """
    text = f"TP\tFP\tTN\tFN\t\n{c['TP']}\t{c['FP']}\t{c['TN']}\t{c['FN']}\n"
    if m is None:
        return text
    text += (f"Accuracy: {m['accuracy']!r}\nPrecision: {m['precision']!r}\nRecall: {m['recall']!r}\n"
             f"F1 score: {m['f1']!r}\nYes ratio: {m['yes_ratio']!r}\n")
    if llava_line:
        text += "%.3f, %.3f, %.3f, %.3f, %.3f\n" % (m["f1"], m["accuracy"], m["precision"], m["recall"],
                                                    m["yes_ratio"])
    return text


# ---------------------------------------------------------------------------------------------- joining
@dataclass
class Joined:
    """Answers aligned with questions. ``mode``: ``question_id`` or ``position`` (ids absent)."""

    pairs: list[tuple[dict, dict]]
    mode: str
    unanswered: list[Any] = field(default_factory=list)     # question ids without an answer
    unknown: list[Any] = field(default_factory=list)        # answer ids not among the questions
    duplicates: list[Any] = field(default_factory=list)     # answer ids given more than once
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.unanswered or self.unknown or self.duplicates)

    def problem(self) -> str | None:
        """One line naming the first mismatch, or None."""
        parts = []
        for what, ids in (("questions without an answer", self.unanswered),
                          ("answers with an unknown question_id", self.unknown),
                          ("duplicate answer question_ids", self.duplicates)):
            if ids:
                parts.append(f"{len(ids)} {what} (first: {ids[0]!r})")
        return "; ".join(parts) or None


def join_answers(questions: Sequence[dict], answers: Sequence[dict], key: str = "question_id") -> Joined:
    """Pair each question with its answer by ``question_id``; report, never hide, a mismatch.

    If *no* answer carries ``key``, fall back to file position (the references' behaviour) and say so in
    ``notes``; a count mismatch is then reported as unanswered questions / surplus answers. Answers that
    carry ids only partly are a mismatch (reported under ``unknown`` as ``None``).
    """
    if answers and all(key not in a for a in answers):
        n = min(len(questions), len(answers))
        joined = Joined([(questions[i], answers[i]) for i in range(n)], "position",
                        notes=[f"answers carry no {key!r}: joined by file position"])
        joined.unanswered = [q.get(key, i) for i, q in enumerate(questions[n:], start=n)]
        joined.unknown = [f"#{i}" for i in range(n, len(answers))]
        return joined
    by_id: dict[Any, dict] = {}
    joined = Joined([], key)
    q_ids = {q[key] for q in questions}
    for a in answers:
        aid = a.get(key)
        if aid in by_id:
            joined.duplicates.append(aid)
            continue
        if aid not in q_ids:
            joined.unknown.append(aid)
            continue
        by_id[aid] = a
    for q in questions:
        a = by_id.get(q[key])
        if a is None:
            joined.unanswered.append(q[key])
        else:
            joined.pairs.append((q, a))
    if joined.ok and [a.get(key) for a in answers] != [q[key] for q in questions]:
        joined.notes.append("answers are not in question-file order (joined by question_id)")
    return joined


def score_answers(questions: Sequence[dict], answers: Sequence[dict], parser: str = "official",
                  yes_ratio_from: str = "predictions", text_key: str = "text") -> dict[str, Any]:
    """One split: join by question_id, parse, confusion, metrics (+ per-answer labels and join report)."""
    joined = join_answers(questions, answers)
    parse = PARSERS[parser]
    labels = [q["label"] for q, _ in joined.pairs]
    preds = [parse(a[text_key]) for _, a in joined.pairs]
    c = confusion(labels, preds)
    m = metrics_from_confusion(c, n=len(labels), yes_ratio_from=yes_ratio_from,
                               n_label_yes=sum(lab == "yes" for lab in labels))
    return {"confusion": c, "metrics": {k: m[k] for k in METRIC_KEYS}, "zero_division": m["zero_division"],
            "n": len(labels), "per_answer": [{"question_id": q.get("question_id"), "label": q["label"], "parsed": p}
                                             for (q, _), p in zip(joined.pairs, preds)],
            "join": {"mode": joined.mode, "ok": joined.ok, "problem": joined.problem(), "notes": joined.notes}}


def read_questions(path: Path) -> list[dict]:
    """A POPE question file (JSON Lines despite ``.json``): ``question_id``, ``image``, ``text``, ``label``.

    Fast path: the lines are decoded as one JSON array; any problem re-reads the file line by line so
    the error names the file, line and field.
    """
    path = Path(path)
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        recs = json.loads("[" + ",".join(lines) + "]")
        ok = all(isinstance(r, dict) and r.keys() >= _QUESTION_KEYS and (r["label"] == "yes" or r["label"] == "no")
                 for r in recs) and len({r["question_id"] for r in recs}) == len(recs)
    except (OSError, UnicodeDecodeError, ValueError, TypeError):
        ok = False
    if ok:
        return recs
    return _read_questions_checked(path)


_QUESTION_KEYS = frozenset(("question_id", "image", "text", "label"))


def _read_questions_checked(path: Path) -> list[dict]:
    rows = []
    seen: set = set()
    for line, rec in iter_jsonl(path):
        for key in ("question_id", "image", "text", "label"):
            if key not in rec:
                raise DataError(path, "missing field", line=line, field=key)
        if rec["label"] not in ("yes", "no"):
            raise DataError(path, f"label must be 'yes' or 'no', got {rec['label']!r}", line=line, field="label")
        if rec["question_id"] in seen:
            raise DataError(path, f"duplicate question_id {rec['question_id']!r}", line=line, field="question_id")
        seen.add(rec["question_id"])
        rows.append(rec)
    return rows


def question_file_version(path: Path) -> str | None:
    """``v3``/``v1`` when ``path`` is byte-identical to a real POPE question file, else None."""
    digest = sha256_file(path)
    for version, files in KNOWN_SHA256.items():
        if digest in files.values():
            return version
    return None


# ---------------------------------------------------------------------------------------------- protocols
# (gold label, parsed answer) → index into CELLS; anything else (unparsed) → 4
CELL_OF = {("yes", "yes"): 0, ("no", "yes"): 1, ("no", "no"): 2, ("yes", "no"): 3}


class PopeProtocol(Benchmark):
    """Base of the POPE protocols; a registered subclass only declares name, version, generation, params.

    ``params``: ``question_version`` (folder under ``<root>/pope/``), ``question_sha256`` (split → sha256
    of the real file), ``splits``, ``parser`` (a key of ``PARSERS``), ``prompt`` (``"{question}"`` +
    suffix: the raw POPE question unless a suffix is appended), ``aggregate`` (``per_split`` metrics are
    always reported; ``mean_f1`` / ``mean_accuracy`` are means over the splits), ``yes_ratio_from``
    (always ``predictions``), ``report_rounding`` (``round`` or HA-DPO's ``truncate2``, applied by the
    leaderboard only; scores are stored at full precision).
    """

    benchmark: ClassVar[str] = "pope"
    headline: ClassVar[dict[str, tuple[str, bool]]] = {
        "adversarial/accuracy": ("POPE-adv acc", True), "adversarial/f1": ("POPE-adv F1", True),
        "random/accuracy": ("POPE-rand acc", True), "mean/f1": ("POPE mean F1", True)}

    # ------------------------------------------------------------------ data
    def question_file(self, data_root: Path, split: str) -> Path:
        return Path(data_root) / "pope" / self.params["question_version"] / f"coco_pope_{split}.json"

    def data_files(self, data_root: Path) -> list[Path]:
        return [self.question_file(data_root, s) for s in self.params["splits"]]

    def check_question_files(self, data_root: Path) -> dict[str, dict]:
        """sha256 of each question file against the known real files; the other version's file is refused."""
        want = self.params["question_version"]
        out = {}
        for split in self.params["splits"]:
            path = self.question_file(data_root, split)
            if not path.exists():
                raise DataError(path, "POPE question file not found (run `python -m bench data fetch pope`)")
            digest = sha256_file(path)
            known = {sha: (v, s) for v, files in KNOWN_SHA256.items() for s, sha in files.items()}
            if digest == self.params["question_sha256"].get(split):
                status = f"real POPE {want} {split} (sha256 verified)"
            elif digest in known:
                v, s = known[digest]
                raise DataError(path, f"this is the real POPE {v} {s} question file, but protocol {self.name!r}"
                                      f" expects {want} {split}; never mix versions")
            else:
                status = "unrecognised (not a real POPE file, e.g. the synthetic world)"
            out[split] = {"file": f"pope/{want}/{path.name}", "sha256": digest, "status": status}
        return out

    def _questions(self, data_root: Path) -> list[tuple[str, dict]]:
        return [(split, q) for split in self.params["splits"]
                for q in read_questions(self.question_file(data_root, split))]

    def prompt(self, question: str) -> str:
        return self.params["prompt"].format(question=question)

    def items(self, data_root: Path) -> list[EvalItem]:
        self.check_question_files(data_root)
        images = Path(data_root) / "coco" / "val2014"
        return [EvalItem(f"{split}/{q['question_id']}", str(images / q["image"]), self.prompt(q["text"]),
                         {"split": split, "label": q["label"], "image_key": q["image"]})
                for split, q in self._questions(data_root)]

    # ------------------------------------------------------------------ scoring
    def aggregate(self, counts: np.ndarray) -> tuple[dict[str, float], dict[str, list[str]]]:
        """counts[split, cell] (cells = ``CELLS``) → flat metrics + zero-division guards per split."""
        metrics: dict[str, float] = {}
        zero: dict[str, list[str]] = {}
        f1s, accs = [], []
        for s, split in enumerate(self.params["splits"]):
            row = counts[s]
            n = int(row.sum())
            if n == 0:
                continue
            m = metrics_from_confusion({k: int(row[i]) for i, k in enumerate(CELLS)}, n=n)
            for k in METRIC_KEYS:
                metrics[f"{split}/{k}"] = m[k]
            if m["zero_division"]:
                zero[split] = m["zero_division"]
            f1s.append(m["f1"])
            accs.append(m["accuracy"])
        if f1s:
            metrics["mean/f1"] = sum(f1s) / len(f1s)
            metrics["mean/accuracy"] = sum(accs) / len(accs)
        return metrics, zero

    def sample_verdict(self, detail: dict) -> dict:
        """Per-sample log: the parsed answer, the label, and correct = answer equals label."""
        return {"correct": detail.get("parsed") == detail.get("label"), "answer": detail.get("parsed"),
                "label": detail.get("label")}

    def paired_units(self, score: dict) -> tuple[dict[str, np.ndarray], Callable[[np.ndarray], dict]] | None:
        """Per-image confusion counts ``[split, cell]`` from a score file's ``details.per_item``, and the
        statistic of a summed array (for :func:`bench.stats.paired_bootstrap_delta`); None if the file
        predates per-item images."""
        items = (score.get("details") or {}).get("per_item") or []
        if not items or any("image" not in it for it in items):
            return None
        split_index = {s: i for i, s in enumerate(self.params["splits"])}
        units: dict[str, np.ndarray] = {}
        for it in items:
            split = str(it["id"]).split("/", 1)[0]
            arr = units.setdefault(str(it["image"]), np.zeros((len(split_index), len(CELLS)), dtype=np.int64))
            arr[split_index[split], CELL_OF.get((it["label"], it["parsed"]), 4)] += 1
        return units, lambda summed: self.aggregate(summed)[0]

    def score(self, predictions: list[dict], data_root: Path, *, n_boot: int = 1000,
              item_ids: set[str] | None = None, seed: int = 0, **_: Any) -> dict:
        parse = PARSERS[self.params["parser"]]
        files = self.check_question_files(data_root)
        questions = self._questions(data_root)
        if item_ids is not None:
            questions = [(split, q) for split, q in questions if f"{split}/{q['question_id']}" in item_ids]
        texts: dict[str, str] = {}
        duplicates: list[str] = []
        for p in predictions:
            if p["id"] in texts:
                duplicates.append(p["id"])
            texts[p["id"]] = p["text"]  # the last line wins (append-only files)
        split_index = {s: i for i, s in enumerate(self.params["splits"])}
        image_index: dict[str, int] = {}
        cell_of = CELL_OF
        missing, empty, per_item = [], [], []
        rows_img, rows_split, rows_cell = [], [], []
        scored_ids = set()
        for split, q in questions:
            iid = f"{split}/{q['question_id']}"
            scored_ids.add(iid)
            text = texts.get(iid)
            if text is None:
                missing.append(iid)
                continue
            if not text.strip():
                empty.append(iid)
            parsed = parse(text)
            per_item.append({"id": iid, "image": q["image"], "label": q["label"], "parsed": parsed})
            rows_img.append(image_index.setdefault(q["image"], len(image_index)))
            rows_split.append(split_index[split])
            rows_cell.append(cell_of.get((q["label"], parsed), 4))
        counts = np.zeros((len(image_index), len(split_index), len(CELLS)), dtype=np.int64)
        np.add.at(counts, (np.asarray(rows_img, dtype=np.int64), np.asarray(rows_split, dtype=np.int64),
                           np.asarray(rows_cell, dtype=np.int64)), 1)
        metrics, zero = self.aggregate(counts.sum(axis=0))

        def stat(units: Sequence[int]) -> dict[str, float]:
            return self.aggregate(counts[np.fromiter(units, dtype=np.int64, count=len(units))].sum(axis=0))[0]

        ci = bootstrap_ci(list(range(len(image_index))), stat, n_boot=n_boot, seed=seed)
        unknown = sorted(set(texts) - scored_ids) if item_ids is None else []
        total = counts.sum(axis=(0, 1))
        reasons = {i: "no prediction (not scored)" for i in missing}
        reasons.update({i: "empty generation (kept and scored as generated)" for i in empty})
        return {
            "metrics": metrics, "ci": ci, "n": len(per_item),
            "skipped": {"count": len(reasons), "reasons": reasons, "missing": len(missing), "empty": len(empty)},
            "empty_generations": {"count": len(empty), "ids": empty},
            "unmatched_predictions": {"count": len(unknown), "ids": unknown[:50],
                                      "duplicate_ids": sorted(set(duplicates))[:50]},
            "confusion": {split: {k: int(counts[:, s, i].sum()) for i, k in enumerate(CELLS)}
                          for split, s in split_index.items() if counts[:, s].sum()},
            "zero_division": zero, "parser": self.params["parser"],
            "other_answers": int(total[4]), "question_files": files,
            "details": {"per_item": per_item},
        }


def _params(version: str, parser: str = "official", suffix: str = "", **extra: Any) -> dict[str, Any]:
    """The declaration fields every POPE protocol states (explicit, so the fingerprint covers them)."""
    return {"question_version": version, "question_sha256": dict(KNOWN_SHA256[version]),
            "question_rows": dict(KNOWN_ROWS[version]), "splits": list(SPLITS), "parser": parser,
            "prompt": "{question}" + suffix, "suffix": suffix, "aggregate": "per_split+mean_f1",
            "yes_ratio_from": "predictions", "zero_division": "0.0, listed under zero_division",
            "ci": "bootstrap over images (all questions of an image together), 1000 draws, seed 0",
            "report_rounding": "round", **extra}


@BENCHMARKS.register
class Pope(PopeProtocol):
    """POPE v3 (3 splits, official parser, raw question, greedy, 512 new tokens; HA-DPO's evaluation)."""

    name = "pope"
    version = "3"
    description = "POPE v3 (3 splits, official AoiDragon/POPE parser, raw question, greedy, 512 tokens)"
    generation = GenerationSettings(max_new_tokens=512)
    params = _params("v3")


@BENCHMARKS.register
class PopeV1(PopeProtocol):
    """POPE v1 (AoiDragon/POPE@e3e3926, the files LLaVA-1.5 used: 2910 random questions), official parser."""

    name = "pope-v1"
    version = "1"
    description = "POPE v1 (LLaVA-1.5's e3e3926 files, 2910 random questions), official parser, raw question"
    generation = GenerationSettings(max_new_tokens=512)
    params = _params("v1")


@BENCHMARKS.register
class PopeLlava15(PopeProtocol):
    """POPE as LLaVA-1.5 reports it: v1 files, one-word suffix, 128 tokens, mean F1 over the splits."""

    name = "pope-llava15"
    version = "1"
    description = "POPE as LLaVA-1.5: v1 files, 'single word or phrase' suffix, official parser, mean F1"
    generation = GenerationSettings(max_new_tokens=128)
    params = _params("v1", suffix=SUFFIX_ONE_WORD, aggregate="mean_f1 (LLaVA-1.5 paper: mean F1 of the 3 splits)")
    headline = {"mean/f1": ("POPE mean F1", True), "adversarial/f1": ("POPE-adv F1", True),
                "random/f1": ("POPE-rand F1", True)}


@BENCHMARKS.register
class PopeHadpo(PopeProtocol):
    """POPE as HA-DPO's README: v3, raw question, 512 tokens, official parser, per split, truncated to 2 dp."""

    name = "pope-hadpo"
    version = "3"
    description = "POPE as HA-DPO: v3, raw question, 512 tokens, official parser; reported truncated to 2 dp"
    generation = GenerationSettings(max_new_tokens=512)
    params = _params("v3", report_rounding="truncate2",
                     report_note="HA-DPO's README truncates percentages to 2 decimals (benchmarks.md §1.6);"
                                 " scores are stored at full precision, the leaderboard truncates")


@BENCHMARKS.register
class PopeOpera(PopeProtocol):
    """POPE with OPERA's parser (n't and NO count as no), raw question, 10 new tokens."""

    name = "pope-opera"
    version = "3"
    description = "POPE v3 with OPERA's parser (n't/NO count as no), raw question, 10 new tokens"
    generation = GenerationSettings(max_new_tokens=10)
    params = _params("v3", parser="opera")


@BENCHMARKS.register
class PopeLmms(PopeProtocol):
    """POPE as lmms-eval's pope_full: one-word suffix, exact yes/no match, 128 tokens, per split."""

    name = "pope-lmms"
    version = "3"
    description = "POPE as lmms-eval: one-word suffix, exact yes/no match (others counted), 128 tokens"
    generation = GenerationSettings(max_new_tokens=128)
    params = _params("v3", parser="exact", suffix=SUFFIX_ONE_WORD,
                     data_note="lmms-eval loads lmms-lab/POPE (believed = POPE edebdda); v3 files used here")
