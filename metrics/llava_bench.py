"""LLaVA-Bench (in-the-wild) (Liu et al., "Visual Instruction Tuning", 2023): 24 images, 60 questions.

Reference followed: ``haotian-liu/LLaVA@c121f04``: ``llava/eval/eval_gpt_review_bench.py`` (prompt,
judge call, ``parse_score``), ``llava/eval/summarize_gpt_review.py`` (aggregation), rule file
``llava/eval/table/rule.json`` (shipped byte-identical as ``data/llava_bench_rule.json``), generation as
``scripts/v1_5/eval/llavabench.sh`` runs ``model_vqa`` (raw question, temperature 0 = greedy, 1024 new
tokens). Data: ``liuhaotian/llava-bench-in-the-wild`` (``questions.jsonl``, ``context.jsonl``,
``answers_gpt4.jsonl``, ``images/``).

Procedure, per question:

1. The rule is ``rule["llava_bench_" + category]`` (``conv``, ``detail``, ``complex``); the text-only judge
   gets a system message ("You are a helpful and precise assistant for checking the quality of the
   answer.") and one user message: ``[Context]`` (the image's caption, lines joined by newlines when a
   list), ``[Question]``, ``[Assistant 1]`` = the reference answer (text-only GPT-4's, ``answers_gpt4``),
   ``[Assistant 2]`` = the model's answer, ``[System]`` = the rule's prompt — each block as the reference
   lays it out. Judge: ``gpt-4-0314``, temperature 0.2, max_tokens 1024.
2. ``parse_score``: the reply's first line, commas replaced by spaces, split on single spaces; exactly two
   pieces that ``float`` accepts → ``[reference, model]``, anything else → ``[-1, -1]``. The reference
   **averages the ``[-1, -1]`` pairs in** like real scores; so does this scorer (counted, see below).
3. Per category and ``all``: mean of each column (s0 = reference, s1 = model); **relative** =
   s1 / s0 × 100; reference and model scores on the 0–100 scale = mean × 10.

Score file: ``metrics`` at full precision — ``relative``, ``reference_score``, ``model_score`` (overall) and
``<category>/relative|reference_score|model_score``, all on the reference's 0–100 scale (relative may
exceed 100). ``details.reference_metrics`` = what ``summarize_gpt_review.py`` prints: means rounded to 3
decimals first, then ``round(s1/s0*100, 1), round(s0*10, 1), round(s1*10, 1)``. ``details.per_item``
= ``{"id", "image", "category", "scores": [s0, s1], "status"}``; ``ci`` = percentile bootstrap over the
24 images (all questions of an image move together).

Deliberate deviations (each visible in the score file):

* Unparseable replies keep ``[-1, -1]`` in every mean exactly as the reference does, but are counted in
  ``parse_failures`` (item ids) and listed in ``skipped.reasons`` with the words "averaged in";
  ``skipped.kept_in_metrics`` says how many reported items still count.
* Questions, reference answers and predictions are joined by ``question_id`` (the reference zips the
  three files by line); a missing reference answer is a DataError, a prediction id not in the benchmark
  is reported, a missing prediction is skipped with a reason (the reference pairs lines regardless).
* A zero reference mean (only ``-1``/``0`` pairs cancelling out) leaves that relative score out and
  names it in ``undefined`` (the reference raises ZeroDivisionError).

Protocols: ``llava-bench`` — the GPT-4 judge above (a different judge model is a different protocol;
``gpt-4-0314`` is what the reference hard-codes). ``llava-bench-annotation`` — the same procedure with
the offline annotation-grounded judge ``llava-bench-annotation`` (:class:`LlavaBenchAnnotationJudge`,
defined here), which scores both answers from COCO-object claims against the context: a **different
metric**, never mixed with GPT-4's.

Data layout under ``<root>/llava-bench/``: ``questions.jsonl`` (``{"question_id", "image", "text",
"category"}``), ``context.jsonl`` (``{"image", "caption"}``), ``answers_gpt4.jsonl`` (``{"question_id",
"text"}``), ``images/<image>``.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from bench.benchmark import Benchmark, EvalItem, GenerationSettings
from bench.data.synthetic_judged import ensure_judged
from bench.errors import DataError
from bench.io import iter_jsonl, sha256_file
from bench.judges import OfflineJudge
from bench.registry import BENCHMARKS, JUDGES
from bench.stats import bootstrap_ci
from bench.text import object_mentions
from metrics.judged import judge_items, missing_judge

RULE_FILE = Path(__file__).resolve().parent / "data" / "llava_bench_rule.json"
CATEGORIES = ("conv", "detail", "complex")
SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."
FOLDER = "llava-bench"
UNPARSED = [-1.0, -1.0]


# ------------------------------------------------------------------------------------------ prompt
@functools.lru_cache(maxsize=1)
def rules() -> dict:
    return json.loads(RULE_FILE.read_text(encoding="utf-8"))


def rule(category: str) -> dict:
    key = "llava_bench_" + category
    if key not in rules():
        raise DataError(RULE_FILE, f"no rule for category {key!r}")
    return rules()[key]


def context_text(caption: str | list[str]) -> str:
    return "\n".join(caption) if isinstance(caption, list) else caption


def build_prompt(caption: str | list[str], question: str, reference_answer: str, answer: str, category: str) -> str:
    """The user message of the reference's review call, block for block."""
    r = rule(category)
    role = r["role"]
    return (f"[Context]\n{context_text(caption)}\n\n"
            f"[Question]\n{question}\n\n"
            f"[{role} 1]\n{reference_answer}\n\n[End of {role} 1]\n\n"
            f"[{role} 2]\n{answer}\n\n[End of {role} 2]\n\n"
            f"[System]\n{r['prompt']}\n\n")


def parse_prompt(prompt: str, role: str = "Assistant") -> tuple[str, str, str, str] | None:
    """Inverse of :func:`build_prompt`: (context, question, answer 1, answer 2), or None."""
    marks = ["[Context]\n", "\n\n[Question]\n", f"\n\n[{role} 1]\n", f"\n\n[End of {role} 1]\n\n[{role} 2]\n",
             f"\n\n[End of {role} 2]\n\n[System]\n"]
    if not prompt.startswith(marks[0]):
        return None
    parts, rest = [], prompt[len(marks[0]):]
    for mark in marks[1:]:
        head, found, rest = rest.partition(mark)
        if not found:
            return None
        parts.append(head)
    return parts[0], parts[1], parts[2], parts[3]


# ------------------------------------------------------------------------------------------ offline judge
class LlavaBenchAnnotationJudge(OfflineJudge):
    """Offline LLaVA-Bench reviewer: both answers' COCO-object claims vs the context.

    Offline LLaVA-Bench reviewer (registry ``bench.judges``, protocol ``llava-bench-annotation``); it reads its
    inputs back out of :func:`build_prompt`'s prompt (:func:`parse_prompt`).

    present = objects asserted in the context (:func:`bench.text.object_mentions`). Each answer gets
    ``clip(1 + round(9 · coverage) − 3 · errors, 1, 10)`` with coverage = share of the present objects it
    asserts and errors = objects it asserts that are absent + present objects it negates. Reply: ``"s1 s2"``
    on the first line (reference answer, model answer), then an explanation — the reference's format.
    """

    description = "offline LLaVA-Bench reviewer: COCO-object claims of both answers vs the context"
    version = "1"
    judge_id = "llava-bench-annotation:coco-objects:v1"

    @staticmethod
    def grade(present: set[str], answer: str) -> tuple[int, str]:
        asserted, negated = object_mentions(answer)
        errors = sorted(asserted - present) + sorted(negated & present)
        coverage = len(asserted & present) / len(present) if present else (0.0 if errors else 1.0)
        score = max(1, min(10, 1 + round(9 * coverage) - 3 * len(errors)))
        why = f"covers {len(asserted & present)} of {len(present)} objects"
        return score, why + (f", wrong about {', '.join(errors)}" if errors else ", no wrong object")

    def reply(self, prompt: str) -> str:
        parsed = parse_prompt(prompt)
        if parsed is None:
            return "The prompt is not a LLaVA-Bench review prompt."
        context, _question, first, second = parsed
        present = object_mentions(context)[0]
        (s1, w1), (s2, w2) = self.grade(present, first), self.grade(present, second)
        return f"{s1} {s2}\nAssistant 1 {w1}; Assistant 2 {w2}."


JUDGES.add("llava-bench-annotation", LlavaBenchAnnotationJudge)


# ------------------------------------------------------------------------------------------ scores
def parse_score(review: str) -> tuple[list[float], bool]:
    """``([reference, model], parsed)``: the reference's ``parse_score`` (``[-1, -1]`` when it fails)."""
    if not isinstance(review, str):
        return list(UNPARSED), False
    pieces = review.split("\n")[0].replace(",", " ").split(" ")
    if len(pieces) != 2:
        return list(UNPARSED), False
    try:
        return [float(pieces[0]), float(pieces[1])], True
    except ValueError:
        return list(UNPARSED), False


def reference_summary(tuples_by_category: dict[str, list[list[float]]]) -> dict[str, dict[str, float]]:
    """What ``summarize_gpt_review.py`` prints per category and ``all`` (its order of rounding)."""
    out = {}
    allv = [t for cat in tuples_by_category.values() for t in cat]
    for k, v in sorted({**tuples_by_category, "all": allv}.items()):
        if not v:
            continue
        s0, s1 = (round(x, 3) for x in np.asarray(v, dtype=float).mean(0).tolist())
        out[k] = {"relative": round(s1 / s0 * 100, 1) if s0 else None, "reference_score": round(s0 * 10, 1),
                  "model_score": round(s1 * 10, 1)}
    return out


def _unit(items: Iterable[dict]) -> np.ndarray:
    """[n, Σs0, Σs1] per category (CATEGORIES order) for one image's items."""
    arr = np.zeros(3 * len(CATEGORIES), dtype=float)
    for it in items:
        c = CATEGORIES.index(it["category"])
        arr[3 * c:3 * c + 3] += (1.0, float(it["scores"][0]), float(it["scores"][1]))
    return arr


def statistic(summed: np.ndarray) -> dict[str, float]:
    """Metrics of summed units: per category and overall relative / reference / model scores."""
    out: dict[str, float] = {}
    tot = np.zeros(3)
    for c, cat in enumerate(CATEGORIES):
        n, s0, s1 = summed[3 * c:3 * c + 3]
        tot += (n, s0, s1)
        if n:
            out.update(_triple(n, s0, s1, f"{cat}/"))
    if tot[0]:
        out.update(_triple(*tot, ""))
    return out


def _triple(n: float, s0: float, s1: float, prefix: str) -> dict[str, float]:
    out = {f"{prefix}reference_score": s0 / n * 10, f"{prefix}model_score": s1 / n * 10}
    if s0:
        out[f"{prefix}relative"] = (s1 / n) / (s0 / n) * 100
    return out


def _units_by_image(per_item: Sequence[dict]) -> dict[str, np.ndarray]:
    groups: dict[str, list[dict]] = {}
    for it in per_item:
        groups.setdefault(str(it["image"]), []).append(it)
    return {img: _unit(items) for img, items in groups.items()}


# ------------------------------------------------------------------------------------------ data
def _read(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict]]:
    if not path.exists():
        raise DataError(path, "LLaVA-Bench file not found (run `python -m bench data fetch llava-bench`)")
    rows = []
    for line, rec in iter_jsonl(path):
        for key in required:
            if key not in rec:
                raise DataError(path, "missing field", line=line, field=key)
        rows.append((line, rec))
    return rows


def load_benchmark(folder: Path) -> list[dict]:
    """Questions joined with their context and reference answer: ``{"id", "image", "text", "category",
    "caption", "reference"}`` in question-file order (DataError naming file and line on a bad record)."""
    folder = Path(folder)
    qpath, cpath, apath = folder / "questions.jsonl", folder / "context.jsonl", folder / "answers_gpt4.jsonl"
    context = {str(r["image"]): r for _, r in _read(cpath, ("image", "caption"))}
    answers: dict[str, str] = {}
    for line, r in _read(apath, ("question_id", "text")):
        answers.setdefault(str(r["question_id"]), r["text"])
    out, seen = [], set()
    for line, q in _read(qpath, ("question_id", "image", "text", "category")):
        qid = str(q["question_id"])
        if qid in seen:
            raise DataError(qpath, f"question_id {qid} appears twice", line=line, field="question_id")
        seen.add(qid)
        if q["category"] not in CATEGORIES:
            raise DataError(qpath, f"unknown category {q['category']!r} (known: {', '.join(CATEGORIES)})",
                            line=line, field="category")
        if str(q["image"]) not in context:
            raise DataError(cpath, f"no context for image {q['image']!r} (question {qid})")
        if qid not in answers:
            raise DataError(apath, f"no reference answer for question_id {qid}")
        out.append({"id": qid, "image": str(q["image"]), "text": q["text"], "category": q["category"],
                    "caption": context[str(q["image"])]["caption"], "reference": answers[qid]})
    return out


# ------------------------------------------------------------------------------------------ protocols
class LlavaBenchProtocol(Benchmark):
    """LLaVA-Bench (in-the-wild) with the reference's GPT-4 reviewer (gpt-4-0314); needs an API endpoint."""

    name = "llava-bench"
    benchmark = "llava-bench"
    version = "1"
    description = ("LLaVA-Bench in-the-wild (60 questions / 24 images): text-only GPT-4 (0314, t=0.2) rates"
                   " reference and model answers 1-10; relative score per category; greedy, 1024 tokens")
    generation = GenerationSettings(max_new_tokens=1024, num_beams=1, do_sample=False, temperature=1.0)
    params: dict[str, Any] = {
        "folder": FOLDER,
        "judge": "openai:gpt-4-0314",
        "judge_settings": {"temperature": 0.2, "max_tokens": 1024, "system": SYSTEM},
        "rule_sha256": sha256_file(RULE_FILE),
    }
    headline = {"relative": ("LLaVA-Bench relative", True)}
    offline_alternative = "llava-bench-annotation"

    def folder(self, data_root: Path) -> Path:
        return Path(data_root) / self.params["folder"]

    def data_files(self, data_root: Path) -> list[Path]:
        f = self.folder(data_root)
        return [f / "questions.jsonl", f / "context.jsonl", f / "answers_gpt4.jsonl"]

    def questions(self, data_root: Path) -> list[dict]:
        return load_benchmark(self.folder(data_root))

    def items(self, data_root: Path) -> list[EvalItem]:
        img = self.folder(data_root) / "images"
        return [EvalItem(q["id"], str(img / q["image"]), q["text"], {"category": q["category"]})
                for q in self.questions(data_root)]

    def judge_settings(self) -> dict:
        return dict(self.params.get("judge_settings", {}))

    def missing_resources(self, data_root: Path) -> list[str]:
        """Human-readable list of what this protocol needs and lacks (data files, judge key/endpoint)."""
        out = [f"{p}: LLaVA-Bench (in-the-wild) file — run `python -m bench data fetch llava-bench`"
               for p in self.data_files(data_root) if not p.exists()]
        if not out:
            try:
                qs = self.questions(data_root)
            except DataError as exc:
                out.append(str(exc))
            else:
                absent = sorted({q["image"] for q in qs if not (self.folder(data_root) / "images" / q["image"]).exists()})
                if absent:
                    out.append(f"{self.folder(data_root) / 'images'}: {len(absent)} image(s) missing (e.g. {absent[0]})"
                               " — run `python -m bench data fetch llava-bench`")
        return out + missing_judge(self.params["judge"], self.judge_settings(), self.offline_alternative)

    def paired_units(self, score: dict):
        """Per-image sums from ``details.per_item`` and :func:`statistic` (for paired bootstrap differences)."""
        items = (score.get("details") or {}).get("per_item") or []
        if not items or any(k not in it for it in items for k in ("image", "scores", "category")):
            return None
        return _units_by_image(items), statistic

    def score(self, predictions: list[dict], data_root: Path, judge_replies: Iterable[dict] | str | Path | None = None,
              cache_dir: Path | None = None, n_boot: int = 1000, item_ids: set[str] | None = None,
              judge: Any = None, **_: Any) -> dict:
        """Stored generations (+ stored judge replies, or the judge through its cache) → score dict."""
        every = self.questions(data_root)
        known = {q["id"] for q in every}
        qs = [q for q in every if item_ids is None or q["id"] in item_ids]
        texts: dict[str, str] = {}
        reasons: dict[str, str] = {}
        for p in predictions:
            pid = str(p["id"])
            if pid not in known:
                reasons[pid] = "prediction id not in the benchmark (ignored)"
            elif item_ids is not None and pid not in item_ids:
                continue  # outside the --limit selection: kept on disk, not scored
            else:
                if pid in texts:  # the project's one rule (bench/predictions.py): the last line wins
                    reasons[pid] = "duplicate prediction id (the last one is scored)"
                texts[pid] = p.get("text") or ""
        prompts = {}
        for q in qs:
            if q["id"] not in texts:
                img = self.folder(data_root) / "images" / q["image"]
                reasons[q["id"]] = "no prediction" + ("" if img.exists() else f" (image not found: {q['image']})")
                continue
            prompts[q["id"]] = build_prompt(q["caption"], q["text"], q["reference"], texts[q["id"]], q["category"])
        run = judge_items(prompts, self.params["judge"], self.judge_settings(), judge=judge,
                          judge_replies=judge_replies, cache_dir=cache_dir, out_name=self.name)
        reasons.update(run.missing)
        per_item, failures = [], {}
        for q in qs:
            if q["id"] not in run.replies:
                continue
            scores, ok = parse_score(run.replies[q["id"]])
            per_item.append({"id": q["id"], "image": q["image"], "category": q["category"], "scores": scores,
                             "status": "ok" if ok else "unparsed"})
            if not ok:
                first = run.replies[q["id"]].split("\n")[0]
                failures[q["id"]] = first[:120]
                reasons[q["id"]] = (f"judge reply's first line {first[:80]!r} is not two scores; [-1, -1] averaged in"
                                    " as the reference does (kept in the metrics)")
        units = _units_by_image(per_item)
        metrics = statistic(np.sum(list(units.values()), axis=0)) if units else {}
        undefined = {}
        for prefix in [""] + [f"{c}/" for c in CATEGORIES]:
            if f"{prefix}reference_score" in metrics and f"{prefix}relative" not in metrics:
                undefined[f"{prefix}relative"] = "reference mean is 0 (the reference raises ZeroDivisionError)"
        if not per_item:
            undefined["relative"] = "no judged item"
        ci = (bootstrap_ci(list(units.values()), lambda us: statistic(np.sum(us, axis=0)), n_boot=n_boot, seed=0)
              if units else {})
        by_cat: dict[str, list[list[float]]] = {}
        for it in per_item:
            by_cat.setdefault(it["category"], []).append(it["scores"])
        judge_info = {**run.info, "model": self.params["judge"].partition(":")[2] or self.params["judge"],
                      "settings": self.judge_settings(), "served_models": run.served_models()}
        return {
            "metrics": {k: float(v) for k, v in metrics.items() if not math.isnan(v)},
            "ci": ci,
            "n": len(per_item),
            "skipped": {"count": len(reasons), "reasons": reasons, "kept_in_metrics": len(failures)},
            "parse_failures": {"count": len(failures), "items": failures},
            "undefined": undefined,
            "judge": judge_info,
            "details": {"reference_metrics": reference_summary(by_cat), "per_item": per_item},
        }


class LlavaBenchAnnotationProtocol(LlavaBenchProtocol):
    """LLaVA-Bench procedure with the offline annotation-grounded judge — a different metric from GPT-4's."""

    name = "llava-bench-annotation"
    description = ("LLaVA-Bench procedure, offline annotation-grounded judge (COCO-object claims of both answers vs"
                   " the context); not comparable with GPT-4 LLaVA-Bench")
    params = {**{k: v for k, v in LlavaBenchProtocol.params.items() if k != "judge_settings"},
              "judge": "llava-bench-annotation"}
    headline = {"relative": ("LLaVA-Bench relative (annotation judge)", True)}

    def judge_settings(self) -> dict:
        return {}

    def questions(self, data_root: Path) -> list[dict]:
        # a synthetic world prepared before these files existed gets them now (deterministic, seconds)
        ensure_judged(data_root)
        return super().questions(data_root)


BENCHMARKS.add(LlavaBenchProtocol)
BENCHMARKS.add(LlavaBenchAnnotationProtocol)
