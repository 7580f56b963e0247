"""MHaluBench (Chen et al., ACL 2024, arXiv 2402.03190): the checkpoint as a hallucination *detector*.

No official metric code exists (``zjunlp/EasyDetect``); the README's columns (Acc, Prec avg,
Recall avg, Mac.F1) are scikit-learn's ``accuracy_score`` and ``precision_recall_fscore_support(...,
labels=["hallucination", "non-hallucination"], average="macro", zero_division=0)``, re-implemented
here without the dependency:

    per class c: P_c = TP_c/(TP_c+FP_c), R_c = TP_c/(TP_c+FN_c), F_c = 2·TP_c/(2·TP_c+FP_c+FN_c)
    (0 when the denominator is 0); macro = mean over the two classes; accuracy = correct / N.

Claim level scores every claim; segment level labels a segment *hallucination* iff any of its claims
is (gold and predicted alike). Unparseable detector outputs are counted and reported, under one of
three documented policies: ``unparseable_as_wrong`` (default: a third predicted label — wrong for
accuracy, a miss for recall, no predicted class for precision), ``unparseable_as_non_hallucination``,
``unparseable_excluded``.

Parsing: ``strict`` = the parity fixture's rule (strip, lower, ``_``/space → ``-``, exact match);
``lenient`` (protocol default) also accepts a label word inside a longer answer when exactly one of
the two labels occurs (e.g. "This claim is a hallucination.").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bench.benchmark import Benchmark, EvalItem, GenerationSettings
from bench.errors import DataError
from bench.io import iter_jsonl
from bench.registry import BENCHMARKS
from bench.stats import bootstrap_ci

LABELS = ("hallucination", "non-hallucination")
UNPARSEABLE = "unparseable"
POLICIES = ("unparseable_as_wrong", "unparseable_as_non_hallucination", "unparseable_excluded")


def parse_strict(raw: str) -> str:
    t = raw.strip().lower().replace("_", "-").replace(" ", "-")
    return t if t in LABELS else UNPARSEABLE


def parse_lenient(raw: str) -> str:
    strict = parse_strict(raw)
    if strict != UNPARSEABLE:
        return strict
    t = raw.lower().replace("_", "-")
    non = len(re.findall(r"\bnon[- ]?hallucination\b", t))
    hal = len(re.findall(r"(?<![-\w])hallucination\b", t.replace("non-hallucination", "").replace("non hallucination", "")))
    if non and not hal:
        return "non-hallucination"
    if hal and not non:
        return "hallucination"
    return UNPARSEABLE


def apply_policy(gold: list[str], pred: list[str], policy: str) -> tuple[list[str], list[str]]:
    if policy == "unparseable_as_non_hallucination":
        return gold, ["non-hallucination" if p == UNPARSEABLE else p for p in pred]
    if policy == "unparseable_excluded":
        keep = [i for i, p in enumerate(pred) if p != UNPARSEABLE]
        return [gold[i] for i in keep], [pred[i] for i in keep]
    if policy != "unparseable_as_wrong":
        raise ValueError(f"unknown policy {policy!r}; choose from {POLICIES}")
    return gold, pred


def classification_metrics(gold: list[str], pred: list[str]) -> dict[str, Any]:
    """accuracy + macro P/R/F1 over the two labels, sklearn semantics with zero_division=0."""
    n = len(gold)
    per_class = {}
    for c in LABELS:
        tp = sum(1 for g, p in zip(gold, pred) if g == c and p == c)
        fp = sum(1 for g, p in zip(gold, pred) if g != c and p == c)
        fn = sum(1 for g, p in zip(gold, pred) if g == c and p != c)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
        per_class[c] = {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}
    correct = sum(1 for g, p in zip(gold, pred) if g == p)
    return {"n_claims": n, "accuracy": correct / n if n else 0.0,
            "macro_precision": sum(v["precision"] for v in per_class.values()) / len(LABELS),
            "macro_recall": sum(v["recall"] for v in per_class.values()) / len(LABELS),
            "macro_f1": sum(v["f1"] for v in per_class.values()) / len(LABELS), "per_class": per_class}


PROMPT = ('Claim: "{claim}"\nIs this claim about the image a hallucination? '
          'Answer "hallucination" or "non-hallucination".')


class MHaluBenchProtocol(Benchmark):
    """MHaluBench image-to-text claims, the checkpoint as detector (one question per claim)."""

    name = "mhalubench"
    benchmark = "mhalubench"
    version = "1"
    description = "MHaluBench claim/segment-level detection (checkpoint as detector, macro-F1, unparseable counted)"
    generation = GenerationSettings(max_new_tokens=16)
    params: dict[str, Any] = {"prompt": PROMPT, "parser": "lenient", "policy": "unparseable_as_wrong",
                              "file": "mhalubench/claims.jsonl"}
    headline = {"claim/accuracy": ("MHalu claim acc", True), "claim/macro_f1": ("MHalu claim F1", True),
                "segment/macro_f1": ("MHalu seg F1", True)}

    def data_files(self, data_root: Path) -> list[Path]:
        return [Path(data_root) / self.params["file"]]

    def records(self, data_root: Path) -> list[dict]:
        path = self.data_files(data_root)[0]
        rows = []
        for line, rec in iter_jsonl(path):
            for key in ("id", "image_path", "claims"):
                if key not in rec:
                    raise DataError(path, "missing field", line=line, field=key)
            for j, c in enumerate(rec["claims"]):
                if c.get("label") not in LABELS:
                    raise DataError(path, f"claim {j}: label must be one of {LABELS}", line=line, field="claims")
            rows.append(rec)
        return rows

    def items(self, data_root: Path) -> list[EvalItem]:
        out = []
        for rec in self.records(data_root):
            for j, c in enumerate(rec["claims"]):
                out.append(EvalItem(f"{rec['id']}/{j}", str(Path(data_root) / rec["image_path"]),
                                    self.params["prompt"].format(claim=c["claim"]),
                                    {"record": rec["id"], "gold": c["label"]}))
        return out

    def score(self, predictions: list[dict], data_root: Path, n_boot: int = 1000, limit: int | None = None) -> dict:
        parse = parse_lenient if self.params["parser"] == "lenient" else parse_strict
        texts = {p["id"]: p["text"] for p in predictions}
        items = self.items(data_root)
        if limit is not None:
            items = items[:limit]
        rows = [{"id": it.id, "record": it.meta["record"], "gold": it.meta["gold"],
                 "pred": parse(texts[it.id]) if it.id in texts else UNPARSEABLE} for it in items]
        policy = self.params["policy"]

        def stat(sample: list[list[dict]]) -> dict[str, float]:
            flat = [r for group in sample for r in group]
            g, p = apply_policy([r["gold"] for r in flat], [r["pred"] for r in flat], policy)
            claim = classification_metrics(g, p)
            seg_g, seg_p = [], []
            for group in sample:
                seg_g.append("hallucination" if any(r["gold"] == "hallucination" for r in group) else "non-hallucination")
                preds = [r["pred"] for r in group]
                seg_p.append("hallucination" if "hallucination" in preds else
                             (UNPARSEABLE if UNPARSEABLE in preds else "non-hallucination"))
            sg, sp = apply_policy(seg_g, seg_p, policy)
            seg = classification_metrics(sg, sp)
            out = {}
            for level, m in (("claim", claim), ("segment", seg)):
                for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1"):
                    out[f"{level}/{k}"] = m[k]
            return out

        groups: dict[str, list[dict]] = {}
        for r in rows:
            groups.setdefault(r["record"], []).append(r)
        units = list(groups.values())
        metrics = stat(units)
        ci = bootstrap_ci(units, stat, n_boot=n_boot, seed=0)
        missing = [it.id for it in items if it.id not in texts]
        n_unp = sum(r["pred"] == UNPARSEABLE for r in rows)
        return {"metrics": metrics, "ci": ci, "n": len(rows), "policy": policy,
                "unparseable": {"count": n_unp, "ids": [r["id"] for r in rows if r["pred"] == UNPARSEABLE][:50]},
                "skipped": {"count": len(missing), "reasons": {i: "no prediction (unparseable)" for i in missing}},
                "details": {"per_claim": rows}}


BENCHMARKS.add("mhalubench", MHaluBenchProtocol)
