"""MMHal-Bench (Sun et al., "Aligning Large Multimodal Models with Factually Augmented RLHF", 2023).

Reference followed: ``RLHF-V/RLAIF-V@83d917b: eval/eval_gpt_mmhal.py`` (prompt, judge call, answer
merge) and ``eval/summarize_gpt_mmhal_review.py`` (``cal_informative``, ``cal_mmhalscore``); questions
``eval/data/mmhal-bench_answer_template.json`` (= MMHal-Bench's ``response_template.json``); generation as
``script/eval/eval_rlaifv_mmhal.sh`` runs ``muffin/eval/muffin_vqa.py`` (raw question, 3 beams, greedy,
1024 new tokens).

Procedure, per question (96, in file order):

1. The model answer has every ``"Assistant:"`` removed and is stripped (``merge_template_answer``).
2. A **text-only** judge gets one user message: the template (``data/mmhal_judge_prompt_template.txt``,
   the reference's ``template`` string) ``.format(", ".join(image_content), question, gt_answer, answer)``
   — it never sees the image, only its content labels, the question and the standard answer.
   Judge: ``gpt-4-1106-preview``, temperature 0, max_tokens 512, top_p 1, no penalties (``gpt4_grpc.Chat``).
3. Rating: the digits ``s`` in 0..6 for which ``f"rating: {s}"`` occurs in the lower-cased reply; exactly
   one → that rating; none or several → **0** (the reference prints a warning and scores 0).
4. Metrics: ``score`` = mean rating (0–6); ``hallucination_rate`` = share of ratings < 3;
   ``informativeness`` = mean of (rating − 3 if rating ≥ 3 else rating) / 3 — stored as a fraction in
   [0, 1] (the reference prints it ×100); ``<type>/score`` = mean rating per question type.

Score file: ``metrics`` at full precision; ``details.reference_metrics`` = what the reference prints
(``'{:.2f}'`` for score / hallucination rate / informativeness×100, ``round(x, 2)`` per type);
``details.per_item`` = ``{"id", "image", "question_type", "rating", "status"}`` (image = MMHal's
``image_id``), so :meth:`paired_units` rebuilds per-image counts; ``ci`` = percentile bootstrap over
images (:func:`bench.stats.bootstrap_ci`). Recomputable from stored generations + stored judge replies
(``judge/<protocol>.jsonl``, see :mod:`metrics.judged`).

Deliberate deviations (each visible in the score file):

* Replies with zero or several ratings are scored 0 exactly as the reference does (kept in every metric)
  but never silently: ``rating_failures`` counts them by kind with their item ids, and they are listed in
  ``skipped.reasons`` with the words "scored 0"; ``skipped.kept_in_metrics`` says how many of the reported
  items still count in the metrics.
* Question type comes from each record's ``question_type`` (the reference assumes ``index % 8``; the two
  agree on the released file, whose types cycle in that order) so a subset (``limit``) or reordered file
  still groups correctly.
* Items are joined by id (the position in the question file, as RLAIF-V's answer file numbers them), not
  by file position: a missing prediction is skipped with a reason and a prediction id not in the benchmark
  is reported (the reference asserts exactly 96 records and pairs them by position).
* The reference re-asks when the endpoint reports another model than the one requested; here the served
  model of every reply is counted in ``judge.served_models`` and a mismatch is listed in ``notes``.
* An empty benchmark (no judged item) leaves the metrics out and names them in ``undefined`` (the
  reference divides by zero).

Protocols: ``mmhal`` — the GPT-4 judge above (needs ``$OPENAI_API_KEY`` or another OpenAI-compatible
endpoint; a different judge model is a different protocol). ``mmhal-annotation`` — the same procedure
with the offline annotation-grounded judge ``mmhal-annotation`` (:class:`MMHalAnnotationJudge`, defined
here): it reads the image contents, standard answer and response back out of the prompt and rates
COCO-object claims and answer coverage only, so it is a **different metric**, never in a column with
``mmhal``.

Data layout: ``<root>/mmhal/response_template.json`` (the answer template: a JSON list of
``{"question_type", "question_topic", "image_id", "image_src", "image_content": [str], "question",
"gt_answer", ...}``) and ``<root>/mmhal/images/<basename of image_src>`` (``bench data fetch mmhal``; the
synthetic world writes the same layout).
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Sequence

import numpy as np

from bench.benchmark import Benchmark, EvalItem, GenerationSettings
from bench.data.synthetic_judged import ensure_judged
from bench.errors import DataError
from bench.io import read_json, sha256_text
from bench.judges import OfflineJudge
from bench.registry import BENCHMARKS, JUDGES
from bench.stats import bootstrap_ci
from bench.text import object_mentions
from metrics.judged import judge_items, missing_judge

TEMPLATE_FILE = Path(__file__).resolve().parent / "data" / "mmhal_judge_prompt_template.txt"
QUESTION_TYPES = ("attribute", "adversarial", "comparison", "counting", "relation", "environment", "holistic",
                  "other")
QUESTION_FILE = "mmhal/response_template.json"
IMAGE_DIR = "mmhal/images"
REQUIRED = ("question_type", "image_id", "image_src", "image_content", "question", "gt_answer")
HAL_BELOW = 3  # a rating below this is "with hallucination"


# ------------------------------------------------------------------------------------------ prompt
@functools.lru_cache(maxsize=1)
def template() -> str:
    return TEMPLATE_FILE.read_text(encoding="utf-8")


def template_sha256() -> str:
    return sha256_text(template())


def clean_answer(text: str) -> str:
    """The model answer as the reference merges it: every ``"Assistant:"`` removed, then stripped."""
    return (text or "").replace("Assistant:", "").strip()


def build_prompt(image_content: Sequence[str], question: str, gt_answer: str, answer: str) -> str:
    return template().format(", ".join(image_content), question, gt_answer, answer)


def parse_prompt(prompt: str) -> tuple[str, str, str, str] | None:
    """Inverse of :func:`build_prompt`: (image contents, question, standard answer, response), or None."""
    head, s1, s2, s3, tail = template().split("{}")
    if not (prompt.startswith(head) and prompt.endswith(tail)) or len(prompt) < len(head) + len(tail):
        return None
    middle = prompt[len(head):len(prompt) - len(tail)]
    contents, ok1, rest = middle.partition(s1)
    question, ok2, rest = rest.partition(s2)
    gt, ok3, response = rest.partition(s3)
    if not (ok1 and ok2 and ok3):
        return None
    return contents, question, gt, response


# ------------------------------------------------------------------------------------------ offline judge
COLOURS = frozenset({"red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown", "white", "black",
                     "gray", "grey", "tan", "beige", "silver", "gold"})
POSITIONS = frozenset({"left", "right", "above", "below", "top", "bottom"})
NUMBER_WORDS = {w: str(i) for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                                                 "nine", "ten", "eleven", "twelve"])}


def _words(text: str) -> list[str]:
    return [NUMBER_WORDS.get(w, w) for w in re.findall(r"[a-z]+|\d+", text.lower())]


STOPWORDS = frozenset({"there", "these", "those", "this", "that", "with", "image", "picture", "photo", "from",
                       "have", "were", "they", "what", "which", "where", "into", "onto", "some", "about"})


def _key_words(text: str) -> set[str]:
    return {w for w in _words(text) if w in COLOURS or w in POSITIONS or w.isdigit()}


def _content_words(text: str) -> set[str]:
    return {w for w in _words(text) if len(w) > 3 and w not in STOPWORDS}


class MMHalAnnotationJudge(OfflineJudge):
    """Offline MMHal-Bench judge: object claims vs image contents + coverage of the standard answer.

    Offline MMHal-Bench judge (registry ``bench.judges``, protocol ``mmhal-annotation``); it reads its inputs
    back out of :func:`build_prompt`'s prompt (:func:`parse_prompt`).

    present = objects named in the image contents (:func:`bench.text.object_mentions`). The response
    *hallucinates* when it asserts an object not present or negates one that is. Coverage c = share of the
    standard answer's key terms the response matches: objects the answer asserts (asserted by the response
    too), objects it negates (negated by the response too), and its colour, number (digits and number words up
    to twelve) and position words (left, right, above, below, top, bottom); an answer with none of those is
    matched on its content words (longer than three letters, a few stopwords removed). Rating: without
    hallucination 3 + min(3, ⌊3c⌋) (3 … 6), with hallucination min(2, ⌊3c⌋) (0 … 2) — the reference scale's
    "informative" steps read as coverage thirds. Reply: an explanation line, then ``Rating: N``.
    """

    description = "offline MMHal-Bench judge: COCO-object claims vs image contents, coverage of the standard answer"
    version = "1"
    judge_id = "mmhal-annotation:coco-objects:v1"

    @staticmethod
    def rate(contents: str, gt: str, response: str) -> tuple[int, str]:
        """(rating 0–6, explanation)."""
        present = object_mentions(contents)[0]
        asserted, negated = object_mentions(response)
        errors = sorted(asserted - present) + sorted(negated & present)
        gt_asserted, gt_negated = object_mentions(gt)
        words = _key_words(gt)
        said = set(_words(response))
        if not (gt_asserted or gt_negated or words):  # no object / colour / number / position in the answer
            words = _content_words(gt)
        total = len(gt_asserted) + len(gt_negated) + len(words)
        matched = (len(gt_asserted & asserted) + len(gt_negated & negated) + len(words & said))
        coverage = matched / total if total else 0.0
        step = min(3, math.floor(3 * coverage + 1e-9))
        if errors:
            rating = min(2, step)
            why = f"The response claims {', '.join(errors)} against the image contents."
        else:
            rating = 3 + step
            why = "The response makes no object claim against the image contents."
        why += f" It matches {matched} of {total} key terms of the standard answer."
        return rating, why

    def reply(self, prompt: str) -> str:
        parsed = parse_prompt(prompt)
        if parsed is None:
            return "The prompt is not an MMHal-Bench judge prompt; no rating possible."
        contents, _question, gt, response = parsed
        rating, why = self.rate(contents, gt, response)
        return f"{why}\nRating: {rating}"


JUDGES.add("mmhal-annotation", MMHalAnnotationJudge)


# ------------------------------------------------------------------------------------------ ratings
def ratings_found(reply: str) -> list[int]:
    """Every s in 0..6 with ``f"rating: {s}"`` in the lower-cased reply (the reference's search)."""
    low = reply.lower()
    return [s for s in range(7) if f"rating: {s}" in low]


def parse_rating(reply: str) -> tuple[int, str]:
    """(rating, status): status ``ok``, ``no rating`` or ``several ratings`` (both scored 0, as the reference)."""
    found = ratings_found(reply)
    if len(found) == 1:
        return found[0], "ok"
    return 0, "no rating" if not found else "several ratings"


def informativeness(rating: int) -> int:
    return rating - 3 if rating >= 3 else rating


def aggregate(ratings: Sequence[int], types: Sequence[str], type_names: Sequence[str] = QUESTION_TYPES
              ) -> dict[str, float]:
    """Full-precision metrics of a list of ratings with their question types (empty → {})."""
    if not ratings:
        return {}
    n = len(ratings)
    out = {"score": sum(ratings) / n,
           "hallucination_rate": sum(1 for r in ratings if r < HAL_BELOW) / n,
           "informativeness": sum(informativeness(r) for r in ratings) / n / 3}
    for t in type_names:
        vals = [r for r, ty in zip(ratings, types) if ty == t]
        if vals:
            out[f"{t}/score"] = sum(vals) / len(vals)
    return out


def reference_summary(replies: Sequence[str], type_names: Sequence[str] = QUESTION_TYPES) -> dict[str, Any]:
    """What ``summarize_gpt_mmhal_review.py`` prints for judge replies in file order (type = index % 8):
    score and hallucination rate ``'{:.2f}'``, informativeness ``'{:.2f}'`` of mean/3×100, per type
    ``round(mean, 2)``. Types without a reply are left out (the reference raises IndexError)."""
    ratings = [parse_rating(r)[0] for r in replies]
    n = len(ratings)
    if n == 0:
        return {}
    per_type: dict[str, float] = {}
    for k, name in enumerate(type_names):
        vals = [ratings[i] for i in range(n) if i % len(type_names) == k]
        if vals:
            per_type[name] = round(sum(vals) / len(vals), 2)
    info = sum(informativeness(r) for r in ratings) / n / 3 * 100
    return {"score": float(f"{sum(ratings) / n:.2f}"),
            "hallucination_rate": float(f"{sum(1 for r in ratings if r < HAL_BELOW) / n:.2f}"),
            "informativeness": float(f"{info:.2f}"), "per_type": per_type}


# ------------------------------------------------------------------------------------------ data
def load_questions(path: Path, type_names: Sequence[str] = QUESTION_TYPES) -> list[dict]:
    """The answer-template records, checked (DataError naming file and record on a bad one)."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "MMHal-Bench question file not found (run `python -m bench data fetch mmhal`)")
    rows = read_json(path)
    if not isinstance(rows, list):
        raise DataError(path, "expected a JSON list of question records")
    for i, rec in enumerate(rows):
        if not isinstance(rec, dict):
            raise DataError(path, f"record {i}: not an object")
        for key in REQUIRED:
            if key not in rec:
                raise DataError(path, f"record {i}: missing field", field=key)
        if not isinstance(rec["image_content"], list) or not all(isinstance(x, str) for x in rec["image_content"]):
            raise DataError(path, f"record {i}: image_content must be a list of strings", field="image_content")
        if rec["question_type"] not in type_names:
            raise DataError(path, f"record {i}: unknown question_type {rec['question_type']!r}"
                                  f" (known: {', '.join(type_names)})", field="question_type")
    return rows


def image_name(rec: dict) -> str:
    return PurePosixPath(str(rec["image_src"]).split("?", 1)[0]).name


# ------------------------------------------------------------------------------------------ units
def _unit(items: Iterable[dict], type_names: Sequence[str]) -> np.ndarray:
    """[n, Σrating, n_hal, Σinformativeness, per type n…, per type Σrating…] for one image's items."""
    k = len(type_names)
    arr = np.zeros(4 + 2 * k, dtype=np.int64)
    for it in items:
        r = int(it["rating"])
        t = type_names.index(it["question_type"])
        arr[:4] += (1, r, r < HAL_BELOW, informativeness(r))
        arr[4 + t] += 1
        arr[4 + k + t] += r
    return arr


def _statistic(type_names: Sequence[str]):
    k = len(type_names)

    def stat(summed: np.ndarray) -> dict[str, float]:
        n, total, hal, info = (int(x) for x in summed[:4])
        if n == 0:
            return {}
        out = {"score": total / n, "hallucination_rate": hal / n, "informativeness": info / n / 3}
        for j, t in enumerate(type_names):
            if summed[4 + j]:
                out[f"{t}/score"] = int(summed[4 + k + j]) / int(summed[4 + j])
        return out

    return stat


def _units_by_image(per_item: Sequence[dict], type_names: Sequence[str]) -> dict[str, np.ndarray]:
    groups: dict[str, list[dict]] = {}
    for it in per_item:
        groups.setdefault(str(it["image"]), []).append(it)
    return {img: _unit(items, type_names) for img, items in groups.items()}


# ------------------------------------------------------------------------------------------ protocols
class MMHalProtocol(Benchmark):
    """MMHal-Bench with the GPT-4 judge (gpt-4-1106-preview, RLAIF-V's setting); needs an API endpoint."""

    name = "mmhal"
    benchmark = "mmhal"
    version = "1"
    description = ("MMHal-Bench (96 questions): text-only GPT-4 judge (gpt-4-1106-preview, t=0) rates 0-6;"
                   " score, hallucination rate (<3), informativeness; 3 beams, 1024 tokens")
    generation = GenerationSettings(max_new_tokens=1024, num_beams=3, do_sample=False, temperature=1.0)
    params: dict[str, Any] = {
        "question_file": QUESTION_FILE,
        "question_types": list(QUESTION_TYPES),
        "judge": "openai:gpt-4-1106-preview",
        "judge_settings": {"temperature": 0.0, "max_tokens": 512,
                           "extra": {"top_p": 1, "presence_penalty": 0, "frequency_penalty": 0}},
        "template_sha256": template_sha256(),
        "answer_cleanup": "remove 'Assistant:', strip",
    }
    headline = {"score": ("MMHal score (0-6)", True), "hallucination_rate": ("MMHal hal. rate", False)}
    offline_alternative = "mmhal-annotation"

    # -------------------------------------------------------------- data
    def data_files(self, data_root: Path) -> list[Path]:
        return [Path(data_root) / self.params["question_file"]]

    def questions(self, data_root: Path) -> list[dict]:
        return load_questions(Path(data_root) / self.params["question_file"], self.params["question_types"])

    def image_path(self, data_root: Path, rec: dict) -> Path:
        return Path(data_root) / IMAGE_DIR / image_name(rec)

    def items(self, data_root: Path) -> list[EvalItem]:
        return [EvalItem(str(i), str(self.image_path(data_root, rec)), rec["question"],
                         {"image_id": rec["image_id"], "question_type": rec["question_type"]})
                for i, rec in enumerate(self.questions(data_root))]

    def judge_settings(self) -> dict:
        return dict(self.params.get("judge_settings", {}))

    def missing_resources(self, data_root: Path) -> list[str]:
        """Human-readable list of what this protocol needs and lacks (data files, judge key/endpoint)."""
        out = []
        qfile = Path(data_root) / self.params["question_file"]
        if not qfile.exists():
            out.append(f"{qfile}: MMHal-Bench questions — run `python -m bench data fetch mmhal`")
        else:
            try:
                rows = self.questions(data_root)
            except DataError as exc:
                out.append(str(exc))
            else:
                names = sorted({image_name(r) for r in rows})
                absent = [n for n in names if not (Path(data_root) / IMAGE_DIR / n).exists()]
                if absent:
                    out.append(f"{Path(data_root) / IMAGE_DIR}: {len(absent)} of {len(names)} MMHal-Bench images"
                               f" missing (e.g. {absent[0]}) — run `python -m bench data fetch mmhal`")
        return out + missing_judge(self.params["judge"], self.judge_settings(), self.offline_alternative)

    # -------------------------------------------------------------- paired differences
    def paired_units(self, score: dict):
        """Per-image count vectors from ``details.per_item`` and the statistic of their sum (for
        :func:`bench.stats.paired_bootstrap_delta`); None when the file has no per-item ratings."""
        items = (score.get("details") or {}).get("per_item") or []
        types = list(self.params["question_types"])
        if not items or any(k not in it for it in items for k in ("image", "rating", "question_type")):
            return None
        return _units_by_image(items, types), _statistic(types)

    # -------------------------------------------------------------- score
    def score(self, predictions: list[dict], data_root: Path, judge_replies: Iterable[dict] | str | Path | None = None,
              cache_dir: Path | None = None, n_boot: int = 1000, item_ids: set[str] | None = None,
              judge: Any = None, **_: Any) -> dict:
        """Stored generations (+ stored judge replies, or the judge through its cache) → score dict."""
        types = list(self.params["question_types"])
        every = self.questions(data_root)
        known = [str(i) for i in range(len(every))]
        chosen = [(str(i), rec) for i, rec in enumerate(every) if item_ids is None or str(i) in item_ids]
        ids, rows = [i for i, _ in chosen], [rec for _, rec in chosen]
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
        prompts: dict[str, str] = {}
        for iid, rec in zip(ids, rows):
            if iid not in texts:
                img = self.image_path(data_root, rec)
                reasons[iid] = "no prediction" + ("" if img.exists() else f" (image not found: {img.name})")
                continue
            prompts[iid] = build_prompt(rec["image_content"], rec["question"], rec["gt_answer"],
                                        clean_answer(texts[iid]))
        run = judge_items(prompts, self.params["judge"], self.judge_settings(), judge=judge,
                          judge_replies=judge_replies, cache_dir=cache_dir, out_name=self.name)
        reasons.update(run.missing)

        per_item, failures = [], {}
        for iid, rec in zip(ids, rows):
            if iid not in run.replies:
                continue
            rating, status = parse_rating(run.replies[iid])
            per_item.append({"id": iid, "image": str(rec["image_id"]), "question_type": rec["question_type"],
                             "rating": rating, "status": status})
            if status != "ok":
                failures[iid] = status
                reasons[iid] = (f"judge reply has {status} (found {ratings_found(run.replies[iid])});"
                                " scored 0 as the reference does (kept in the metrics)")

        metrics = aggregate([it["rating"] for it in per_item], [it["question_type"] for it in per_item], types)
        units = list(_units_by_image(per_item, types).values())
        stat = _statistic(types)
        ci = bootstrap_ci(units, lambda us: stat(np.sum(us, axis=0)), n_boot=n_boot, seed=0) if units else {}
        judge_info = {**run.info, "model": self.params["judge"].partition(":")[2] or self.params["judge"],
                      "settings": self.judge_settings(), "served_models": run.served_models()}
        notes = []
        want = judge_info["model"]
        other = {m: c for m, c in judge_info["served_models"].items() if m not in (want, "unknown")
                 and not m.startswith(want)}
        if other and self.params["judge"].startswith("openai:"):
            notes.append(f"the endpoint served {other} for judge model {want!r} (the reference re-asks then)")
        ref_replies = [run.replies[it["id"]] for it in per_item]
        return {
            "metrics": {k: float(v) for k, v in metrics.items() if not math.isnan(v)},
            "ci": ci,
            "n": len(per_item),
            "skipped": {"count": len(reasons), "reasons": reasons, "kept_in_metrics": len(failures)},
            "rating_failures": {"count": len(failures), "by_kind": dict(Counter(failures.values())),
                                "items": failures},
            "undefined": {} if per_item else {k: "no judged item (the reference divides by zero)"
                                              for k in ("score", "hallucination_rate", "informativeness")},
            "judge": judge_info,
            "notes": notes,
            "details": {"reference_metrics": reference_summary(ref_replies, types) if len(per_item) == len(rows)
                        else None, "per_item": per_item},
        }


class MMHalAnnotationProtocol(MMHalProtocol):
    """MMHal-Bench procedure with the offline annotation-grounded judge — a different metric from GPT-4's."""

    name = "mmhal-annotation"
    description = ("MMHal-Bench procedure, offline annotation-grounded judge (COCO-object claims and answer"
                   " coverage vs image contents + standard answer); not comparable with GPT-4 MMHal")
    params = {**{k: v for k, v in MMHalProtocol.params.items() if k != "judge_settings"},
              "judge": "mmhal-annotation"}
    headline = {"score": ("MMHal score (annotation judge)", True),
                "hallucination_rate": ("MMHal hal. rate (annotation judge)", False)}

    def judge_settings(self) -> dict:
        return {}

    def questions(self, data_root: Path) -> list[dict]:
        # a synthetic world prepared before these files existed gets them now (deterministic, seconds)
        ensure_judged(data_root)
        return super().questions(data_root)


BENCHMARKS.add(MMHalProtocol)
BENCHMARKS.add(MMHalAnnotationProtocol)
