"""MHaluBench (UniHD; Chen et al., ACL 2024, arXiv 2402.03190): the checkpoint as a hallucination *detector*.

A record holds an image, a (model-written) text split into segments and the claims of each segment,
every claim labelled ``hallucination`` or ``non-hallucination``. The evaluated model reads the image and
the claim(s) and answers a label per claim.

Metric (no official code exists in ``zjunlp/EasyDetect@ad519a2``; the README columns Acc / Prec avg /
Recall avg / Mac.F1 read as scikit-learn's ``accuracy_score`` + ``precision_recall_fscore_support(y_true,
y_pred, labels=["hallucination", "non-hallucination"], average="macro", zero_division=0)``; reimplemented,
no runtime dependency on scikit-learn). With the confusion matrix ``M[gold, pred]`` (pred may also be
``unparseable``), per class c:

    P_c = M[c,c] / Σ_g M[g,c]      R_c = M[c,c] / Σ_p M[c,p]      F_c = 2·M[c,c] / (Σ_g M[g,c] + Σ_p M[c,p])
    macro P/R/F = mean over the two classes;  accuracy = Σ_c M[c,c] / N;  support_c = Σ_p M[c,p]

F is computed from counts as scikit-learn ≥ 1.3 does (not from the rounded P and R). A 0/0 ratio is
``zero_division`` (default 0.0, as the fixture's ``zero_division=0``; ``float("nan")`` drops it from the
macro mean as scikit-learn does) and is listed by name in ``zero_division``. Deviation: an empty input
(every claim excluded) gives 0.0 everywhere with ``accuracy`` listed (scikit-learn returns nan/raises).

Levels: *claim* scores every claim; *segment* labels a segment ``hallucination`` iff any of its claims is
(gold and predicted alike; the rule is inferred from the paper, ``shared/research/benchmarks.md`` §4.2).
Claims without a ``segment`` index form one segment per record. Metrics are reported overall and per
``task_type`` (image-to-text / text-to-image).

Unparseable outputs are counted and listed by id; three documented policies (the parity fixture's):
``unparseable_as_wrong`` (protocol default: a third predicted label — wrong for accuracy, a miss for
recall, no predicted class for precision; a segment with no predicted hallucination and an unparseable
claim is unparseable), ``unparseable_as_non_hallucination`` (replaced before scoring),
``unparseable_excluded`` (claims dropped; a segment is built from its remaining claims, empty ones are
dropped). A claim without a prediction is skipped (listed under ``skipped``), not scored.

Parsing: :func:`parse_label_strict` is the fixture's rule (strip, lower, ``_``/space → ``-``, exact);
:func:`parse_label` (protocol default) also strips quotes/punctuation around the answer and accepts a
longer answer mentioning exactly one of the two labels ("not a hallucination" counts as
non-hallucination); :func:`parse_detector_output` reads a multi-claim
answer (UniHD's ``[{"claim1": "hallucination", "reason": ...}, ...]``, a dict of ``claimN`` keys,
``claim1: label`` lines, or the labels in order) into one label per claim, ``unparseable`` where absent.

Protocols: ``mhalubench`` (one question per claim, the prompt in ``PROMPT``; the synthetic world's
pretraining uses the same string) and ``mhalubench-list`` (one question per record listing its claims,
answer in UniHD's verification format). Both are checkpoint-only: UniHD's tool evidence (object detector,
OCR, web search) is not reproducible offline, so these are a different setting from the paper's UniHD
rows and are named so. Bootstrap CIs resample records (one image each).

Data layout (``<data_root>/mhalubench/claims.jsonl``, one record per line)::

    {"id", "image_path": <relative to the data root>, "task_type": "image-to-text" | "text-to-image",
     "sub_task"?, "response"?, "segments"?: [{"segment", "claims": [...]}],
     "claims": [{"claim", "label": "hallucination" | "non-hallucination", "segment"?: int}]}

HalDet-LLaVA's released record form (``claim_list`` + ``ref_claim_label`` lists) is accepted in place of
``claims``. The real val schema is unverified (benchmarks.md §4.1); a converter writes this layout.
"""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from bench.benchmark import Benchmark, EvalItem, GenerationSettings
from bench.errors import DataError
from bench.io import iter_jsonl
from bench.registry import BENCHMARKS
from bench.stats import bootstrap_ci

LABELS = ("hallucination", "non-hallucination")
UNPARSEABLE = "unparseable"
POLICIES = ("unparseable_as_wrong", "unparseable_as_non_hallucination", "unparseable_excluded")
TASK_TYPES = ("image-to-text", "text-to-image")
_COL = {"hallucination": 0, "non-hallucination": 1}


# ---------------------------------------------------------------------------------------------- parsing
def parse_label_strict(raw: str) -> str:
    """The parity fixture's rule: ``raw.strip().lower()``, ``_`` and space → ``-``, then an exact label."""
    t = raw.strip().lower().replace("_", "-").replace(" ", "-")
    return t if t in LABELS else UNPARSEABLE


_NON = re.compile(r"\bnon[\s_-]*hallucinat(?:ion|ed|ory)\b|\b(?:not|no|isn't|never)\s+(?:an?\s+)?hallucination\b")
_HAL = re.compile(r"\bhallucination\b")


def parse_label(raw: str) -> str:
    """Lenient: strict after trimming quotes/punctuation, else the one label a longer answer mentions."""
    if not isinstance(raw, str):
        return UNPARSEABLE
    t = raw.strip().strip("\"'`.,;:!?*()[]{}<> \t\n").lower()
    t = re.sub(r"[\s_]+", "-", t)
    if t in LABELS:
        return t
    text = raw.lower().replace("_", "-")
    non = len(_NON.findall(text))
    hal = len(_HAL.findall(_NON.sub(" ", text)))
    if non and not hal:
        return "non-hallucination"
    if hal and not non:
        return "hallucination"
    return UNPARSEABLE


_CLAIM_KEY = re.compile(r"^\s*claim\s*[_-]?\s*(\d+)\s*$", re.I)
_CLAIM_LINE = re.compile(r"claim\s*[_-]?\s*(\d+)\s*[\"']?\s*[:=\-–]+\s*[\"']?\s*([a-z][a-z _-]*[a-z])", re.I)
_LABEL_IN_ORDER = re.compile(r"non[\s_-]*hallucination|hallucination", re.I)
_VALUE_KEYS = ("label", "judgment", "judgement", "result", "prediction", "answer")


def _json_candidates(text: str) -> list[Any]:
    out = []
    for open_, close in (("[", "]"), ("{", "}")):
        i, j = text.find(open_), text.rfind(close)
        if i == -1 or j <= i:
            continue
        chunk = text[i: j + 1]
        for loader in (json.loads, ast.literal_eval):
            try:
                out.append(loader(chunk))
                break
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
    return out


def _labels_from_json(obj: Any, n: int) -> dict[int, str]:
    found: dict[int, str] = {}
    items = obj if isinstance(obj, list) else [obj]
    for pos, el in enumerate(items):
        if isinstance(el, str):
            found.setdefault(pos, parse_label(el))
            continue
        if not isinstance(el, dict):
            continue
        keyed = False
        for key, value in el.items():
            m = _CLAIM_KEY.match(str(key))
            if m and isinstance(value, str):
                found.setdefault(int(m.group(1)) - 1, parse_label(value))
                keyed = True
        if not keyed:
            for key in _VALUE_KEYS:
                if isinstance(el.get(key), str):
                    found.setdefault(pos, parse_label(el[key]))
                    break
    return {k: v for k, v in found.items() if 0 <= k < n}


def parse_detector_output(text: str, n_claims: int) -> list[str]:
    """A free-text detector answer → one label per claim (``unparseable`` where none can be read).

    Tried in order, the first that yields any label wins: a JSON (or Python-literal) list/dict in the
    text with ``claimN`` keys or ``label``-like values in order; ``claimN: label`` lines; for a single
    claim, :func:`parse_label` on the whole text; the label words in order when there are exactly
    ``n_claims`` of them.
    """
    if not isinstance(text, str) or n_claims <= 0:
        return [UNPARSEABLE] * max(n_claims, 0)
    for obj in _json_candidates(text):
        found = _labels_from_json(obj, n_claims)
        if found:
            return [found.get(i, UNPARSEABLE) for i in range(n_claims)]
    found = {}
    for m in _CLAIM_LINE.finditer(text):
        idx = int(m.group(1)) - 1
        if 0 <= idx < n_claims and idx not in found:
            found[idx] = parse_label(m.group(2))
    if found:
        return [found.get(i, UNPARSEABLE) for i in range(n_claims)]
    if n_claims == 1:
        return [parse_label(text)]
    words = _LABEL_IN_ORDER.findall(text)
    if len(words) == n_claims:
        return [parse_label(w) for w in words]
    return [UNPARSEABLE] * n_claims


# ---------------------------------------------------------------------------------------------- metric
def apply_policy(gold: Sequence[str], pred: Sequence[str], policy: str) -> tuple[list[str], list[str]]:
    """Gold/pred lists after the unparseable policy (see the module docstring)."""
    if policy == "unparseable_as_wrong":
        return list(gold), list(pred)
    if policy == "unparseable_as_non_hallucination":
        return list(gold), ["non-hallucination" if p == UNPARSEABLE else p for p in pred]
    if policy == "unparseable_excluded":
        keep = [i for i, p in enumerate(pred) if p != UNPARSEABLE]
        return [gold[i] for i in keep], [pred[i] for i in keep]
    raise ValueError(f"unknown policy {policy!r}; choose from {POLICIES}")


def confusion_matrix(gold: Sequence[str], pred: Sequence[str]) -> np.ndarray:
    """``M[g, p]``: rows gold (hallucination, non-hallucination), columns pred (the two + any other)."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(pred)} predictions for {len(gold)} gold labels")
    m = np.zeros((2, 3), dtype=np.int64)
    for g, p in zip(gold, pred):
        if g not in _COL:
            raise ValueError(f"gold label must be one of {LABELS}, got {g!r}")
        m[_COL[g], _COL.get(p, 2)] += 1
    return m


def metrics_from_matrix(m: np.ndarray, zero_division: float = 0.0) -> dict[str, Any]:
    """scikit-learn accuracy + per-class and macro P/R/F1 (labels = the two classes) from ``M[g, p]``."""
    n = int(m.sum())
    zero: list[str] = []
    per_class = {}
    for c, label in enumerate(LABELS):
        tp = int(m[c, c])
        pred_sum = int(m[0, c] + m[1, c])
        true_sum = int(m[c].sum())
        vals = {}
        for name, num, den in (("precision", tp, pred_sum), ("recall", tp, true_sum),
                               ("f1", 2 * tp, pred_sum + true_sum)):
            if den == 0:
                zero.append(f"{name}:{label}")
                vals[name] = zero_division
            else:
                vals[name] = num / den
        per_class[label] = {**vals, "support": true_sum}

    def macro(key: str) -> float:
        vals = [v[key] for v in per_class.values() if not (isinstance(v[key], float) and math.isnan(v[key]))]
        return sum(vals) / len(vals) if vals else zero_division

    if n == 0:
        zero.append("accuracy")
    return {"n_claims": n, "accuracy": (int(m[0, 0] + m[1, 1]) / n) if n else 0.0,
            "macro_precision": macro("precision"), "macro_recall": macro("recall"), "macro_f1": macro("f1"),
            "per_class": per_class, "zero_division": zero}


def classification_metrics(gold: Sequence[str], pred: Sequence[str], zero_division: float = 0.0) -> dict[str, Any]:
    """``accuracy_score`` + ``precision_recall_fscore_support(labels=LABELS, average="macro"|None)``."""
    return metrics_from_matrix(confusion_matrix(gold, pred), zero_division)


def segment_labels(claim_labels: Sequence[str]) -> str:
    """hallucination if any claim is; else unparseable if any claim is; else non-hallucination."""
    if "hallucination" in claim_labels:
        return "hallucination"
    return UNPARSEABLE if UNPARSEABLE in claim_labels else "non-hallucination"


# ---------------------------------------------------------------------------------------------- data
def read_records(path: Path) -> list[dict]:
    """Records of the layout in the module docstring, normalised to ``claims: [{claim, label, segment}]``."""
    rows = []
    seen: set = set()
    for line, rec in iter_jsonl(path):
        for key in ("id", "image_path"):
            if key not in rec:
                raise DataError(path, "missing field", line=line, field=key)
        if rec["id"] in seen:
            raise DataError(path, f"duplicate id {rec['id']!r}", line=line, field="id")
        seen.add(rec["id"])
        if "claims" in rec:
            claims = rec["claims"]
        elif "claim_list" in rec and "ref_claim_label" in rec:
            if len(rec["claim_list"]) != len(rec["ref_claim_label"]):
                raise DataError(path, "claim_list and ref_claim_label differ in length", line=line, field="claim_list")
            claims = [{"claim": c, "label": lab} for c, lab in zip(rec["claim_list"], rec["ref_claim_label"])]
        else:
            raise DataError(path, "missing field (or claim_list + ref_claim_label)", line=line, field="claims")
        norm = []
        for j, c in enumerate(claims):
            if not isinstance(c, dict) or not isinstance(c.get("claim"), str):
                raise DataError(path, f"claim {j}: expected an object with a 'claim' string", line=line, field="claims")
            if c.get("label") not in LABELS:
                raise DataError(path, f"claim {j}: label must be one of {LABELS}, got {c.get('label')!r}",
                                line=line, field="claims")
            norm.append({"claim": c["claim"], "label": c["label"], "segment": c.get("segment", 0)})
        if not norm:
            raise DataError(path, "record has no claims", line=line, field="claims")
        task = rec.get("task_type", "image-to-text")
        rows.append({**rec, "claims": norm, "task_type": task})
    return rows


# ---------------------------------------------------------------------------------------------- protocols
PROMPT = ('Claim: "{claim}"\nIs this claim about the image a hallucination? '
          'Answer "hallucination" or "non-hallucination".')

LIST_PROMPT = (
    "Below is a list of claims that a vision-language model made about this image. For each claim, decide"
    " whether it contradicts what the image shows (objects and their number, attributes, positions, scene"
    " text, facts). A claim that contradicts the image is \"hallucination\", otherwise it is"
    " \"non-hallucination\".\n{claim_list}\nAnswer only with a JSON list in the order of the claims, for"
    " example [{{\"claim1\": \"hallucination\", \"reason\": \"...\"}}, {{\"claim2\": \"non-hallucination\","
    " \"reason\": \"...\"}}].")


class MHaluBenchProtocol(Benchmark):
    """Base of the MHaluBench detector protocols (``params["unit"]``: ``claim`` or ``record``)."""

    benchmark: ClassVar[str] = "mhalubench"
    headline: ClassVar[dict[str, tuple[str, bool]]] = {
        "claim/accuracy": ("MHalu claim acc", True), "claim/macro_f1": ("MHalu claim F1", True),
        "segment/macro_f1": ("MHalu seg F1", True)}

    def data_files(self, data_root: Path) -> list[Path]:
        return [Path(data_root) / self.params["file"]]

    def records(self, data_root: Path) -> list[dict]:
        return read_records(self.data_files(data_root)[0])

    def items(self, data_root: Path) -> list[EvalItem]:
        out = []
        for rec in self.records(data_root):
            image = str(Path(data_root) / rec["image_path"])
            meta = {"record": rec["id"], "task_type": rec["task_type"]}
            if self.params["unit"] == "claim":
                for j, c in enumerate(rec["claims"]):
                    out.append(EvalItem(f"{rec['id']}/{j}", image, self.params["prompt"].format(claim=c["claim"]),
                                        {**meta, "claim_index": j, "gold": c["label"]}))
            else:
                listing = "\n".join(f"claim{j + 1}: {c['claim']}" for j, c in enumerate(rec["claims"]))
                out.append(EvalItem(str(rec["id"]), image, self.params["prompt"].format(claim_list=listing),
                                    {**meta, "n_claims": len(rec["claims"]),
                                     "gold": [c["label"] for c in rec["claims"]]}))
        return out

    def _claim_predictions(self, rec: dict, texts: dict[str, str]) -> tuple[list[str | None], list[str]]:
        """Per-claim parsed labels (None = no prediction) and the item ids without a prediction."""
        parse = parse_label_strict if self.params["parser"] == "strict" else parse_label
        n = len(rec["claims"])
        if self.params["unit"] == "claim":
            ids = [f"{rec['id']}/{j}" for j in range(n)]
            preds = [parse(texts[i]) if i in texts else None for i in ids]
            return preds, [i for i in ids if i not in texts]
        rid = str(rec["id"])
        if rid not in texts:
            return [None] * n, [rid]
        return parse_detector_output(texts[rid], n), []

    def paired_units(self, score: dict):
        """Per-record claim confusion matrices (after the unparseable policy) from ``details.per_claim``
        (``<record>/<claim>`` ids) and the claim-level statistic of a summed matrix, for
        :func:`bench.stats.paired_bootstrap_delta`. Segment-level metrics need the claims' segments, which
        the score file does not keep: they get no paired difference."""
        claims = (score.get("details") or {}).get("per_claim") or []
        if not claims:
            return None
        by_record: dict[str, tuple[list[str], list[str]]] = {}
        for c in claims:
            gold, pred = by_record.setdefault(str(c["id"]).rsplit("/", 1)[0], ([], []))
            gold.append(c["gold"])
            pred.append(c["parsed"])
        policy = self.params["policy"]
        units = {rid: confusion_matrix(*apply_policy(g, p, policy)) for rid, (g, p) in by_record.items()}

        def stat(m: np.ndarray) -> dict[str, float]:
            full = metrics_from_matrix(m)
            if full["n_claims"] == 0:
                return {}
            return {f"claim/{k}": full[k] for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1")}

        return units, stat

    def sample_verdict(self, detail: dict) -> dict:
        """Per-sample log (one claim): the parsed label, the gold label, correct = they are equal (an
        unparseable output is incorrect)."""
        return {"correct": detail.get("parsed") == detail.get("gold"), "answer": detail.get("parsed"),
                "label": detail.get("gold")}

    def score(self, predictions: list[dict], data_root: Path, *, n_boot: int = 1000,
              item_ids: set[str] | None = None, seed: int = 0, **_: Any) -> dict:
        policy = self.params["policy"]
        texts = {p["id"]: p["text"] for p in predictions}
        records = self.records(data_root)
        if item_ids is not None:  # a selection is by image, so a record's items are all in or all out
            records = [rec for rec in records if str(rec["id"]) in item_ids
                       or any(f"{rec['id']}/{j}" in item_ids for j in range(len(rec["claims"])))]
        groups = ["overall", *[f"task_type={t}" for t in sorted({r["task_type"] for r in records})]]
        counts = np.zeros((len(records), len(groups), 2, 2, 3), dtype=np.int64)  # record, group, level, M
        missing: list[str] = []
        unparseable: list[str] = []
        per_claim = []
        for r, rec in enumerate(records):
            preds, miss = self._claim_predictions(rec, texts)
            missing += miss
            gold_all = [c["label"] for c in rec["claims"]]
            seg_of = [c["segment"] for c in rec["claims"]]
            idx = [j for j, p in enumerate(preds) if p is not None]
            for j in idx:
                cid = f"{rec['id']}/{j}"
                per_claim.append({"id": cid, "gold": gold_all[j], "parsed": preds[j]})
                if preds[j] == UNPARSEABLE:
                    unparseable.append(cid)
            g, p = apply_policy([gold_all[j] for j in idx], [preds[j] for j in idx], policy)
            kept_seg = [seg_of[j] for j in idx if policy != "unparseable_excluded" or preds[j] != UNPARSEABLE]
            claim_m = confusion_matrix(g, p)
            seg_g, seg_p = [], []
            for s in dict.fromkeys(kept_seg):
                members = [k for k, sk in enumerate(kept_seg) if sk == s]
                seg_g.append(segment_labels([g[k] for k in members]))
                seg_p.append(segment_labels([p[k] for k in members]))
            seg_m = confusion_matrix(seg_g, seg_p)
            for gi, group in enumerate(groups):
                if group == "overall" or group == f"task_type={rec['task_type']}":
                    counts[r, gi, 0] = claim_m
                    counts[r, gi, 1] = seg_m

        def summarise(c: np.ndarray) -> tuple[dict[str, float], dict[str, dict]]:
            flat: dict[str, float] = {}
            full: dict[str, dict] = {}
            for gi, group in enumerate(groups):
                prefix = "" if group == "overall" else group.split("=", 1)[1] + "/"
                for li, level in enumerate(("claim", "segment")):
                    m = metrics_from_matrix(c[gi, li])
                    full[f"{level}/{group}"] = m
                    if m["n_claims"] == 0:
                        continue
                    for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1"):
                        flat[f"{prefix}{level}/{k}"] = m[k]
            return flat, full

        metrics, full = summarise(counts.sum(axis=0))

        def stat(units: Sequence[int]) -> dict[str, float]:
            return summarise(counts[np.fromiter(units, dtype=np.int64, count=len(units))].sum(axis=0))[0]

        ci = bootstrap_ci(list(range(len(records))), stat, n_boot=n_boot, seed=seed)
        for key, m in full.items():  # segment counts are segments, not claims
            if key.startswith("segment/"):
                m["n_segments"] = m.pop("n_claims")
        return {"metrics": metrics, "ci": ci, "n": len(per_claim), "policy": policy,
                "unparseable": {"count": len(unparseable), "ids": unparseable},
                "skipped": {"count": len(missing), "reasons": {i: "no prediction (not scored)" for i in missing}},
                "groups": full,
                "zero_division": {k: m["zero_division"] for k, m in full.items() if m["zero_division"]},
                "details": {"per_claim": per_claim}}


_SETTING = ("checkpoint-only detector: image + claim(s) → label; no tool evidence (UniHD's object detector,"
            " OCR and web search are not reproducible offline), so not comparable with UniHD's tool rows")


@BENCHMARKS.register
class MHaluBench(MHaluBenchProtocol):
    """MHaluBench claim/segment-level detection, one question per claim (checkpoint as detector)."""

    name = "mhalubench"
    version = "2"
    description = "MHaluBench claim/segment-level detection, one question per claim, macro P/R/F1, unparseable counted"
    generation = GenerationSettings(max_new_tokens=16)
    params = {"unit": "claim", "prompt": PROMPT, "parser": "lenient", "policy": "unparseable_as_wrong",
              "file": "mhalubench/claims.jsonl", "levels": ["claim", "segment"], "groups": ["overall", "task_type"],
              "average": "macro over hallucination/non-hallucination (sklearn semantics, zero_division=0)",
              "setting": _SETTING}


@BENCHMARKS.register
class MHaluBenchList(MHaluBenchProtocol):
    """MHaluBench detection as UniHD's verifier asks it: all claims of a record at once, JSON answer."""

    name = "mhalubench-list"
    version = "1"
    description = "MHaluBench detection, one question per record listing its claims (UniHD's answer format)"
    generation = GenerationSettings(max_new_tokens=512)
    params = {"unit": "record", "prompt": LIST_PROMPT, "parser": "lenient", "policy": "unparseable_as_wrong",
              "file": "mhalubench/claims.jsonl", "levels": ["claim", "segment"], "groups": ["overall", "task_type"],
              "average": "macro over hallucination/non-hallucination (sklearn semantics, zero_division=0)",
              "answer_format": '[{"claim1": "hallucination"|"non-hallucination", "reason": ...}, ...] (UniHD verify)',
              "setting": _SETTING}
