"""OPA-DPO data pipeline → the OPA-DPO record format (methods.md §4.3, §4.4).

1. On-policy rollout: the *current* model answers the query (the CLI samples, temperature 1.0, as
   ``run/online_generate.sh``; top-k 30 / top-p 0.95 are not available in our engine — deviation).
2. Expert revision by the feedback model, sentence by sentence, minimal edits, as the GPT-4V report
   ``AI_json_report`` (``pseudo_rollout_coco.py`` schema): ``{"image_description", "0": {"copied_content",
   "score", "error_type", "object": ["wrong -> right"], "rewritten_content", "reason"}, …, "Added":
   {"rewritten_content", "reason"}}``. Score: 4 correct; a hallucinated sentence gets 4 − severity
   (severity 1 → 3 "minor fix", 2 → 2 "substantial error", 3 → 1 "wrong"); error type
   ``image_recognition_error`` for any finding (the offline model never emits
   ``language_comprehension_error``); "Added" holds annotated objects the revision still misses
   (``add_missing``, on as in the seed).
3. Filters of ``make_opadpo_dataset.py`` (reproduced as coded): empty report; rollout whose last
   sentence already occurs earlier in it, or whose last word occurs more than 30 times; empty revision.
4. ``standard_response`` (y_gt) = a clean reference answer as in the POVID pipeline (the seed uses
   RLAIF-V's chosen answers).

Output: ``OUT/opadpo_data.jsonl`` = ``{"id", "image", "queries", "standard_response",
"original_generate_response", "AI_pseudo_response", "AI_json_report" (a JSON string)}`` — the fields of
``make_opadpo_dataset.py`` with the image as a file (``OUT/images/``) instead of base64 bytes, read by
:func:`bench.data.formats.load_opa` — and ``OUT/opa_data.jsonl`` (the OPA-SFT subset: ``id, image,
queries, standard_response, AI_pseudo_response``). Correct rollouts are kept (all-4 reports), as in
the seed.

With ``questions`` = N > 0 (the embedded ``tiny-llava`` uses 1), each image also yields N yes/no object
questions as instruction items (the rollout answers the question; the expert revision of a hallucinated "Yes" is "No"); see :mod:`bench.data.pipelines.questions`.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.data.pipelines.base import (BuildOptions, Item, Pipeline, clean_reference, dropped, kept, place_image,
                                       usable)
from bench.data.pipelines.questions import ground_truth_answer, review_answer, revised_answer
from bench.data.pipelines.sources import AnnotationSet
from bench.feedback import FeedbackError, Review, describe_annotations
from bench.io import write_jsonl


def severity_to_score(severity: int) -> int:
    """OPA report score of a sentence: 4 correct, else 4 - severity (1 -> 3, 2 -> 2, 3 -> 1)."""
    return 4 if severity <= 0 else {1: 3, 2: 2, 3: 1}[min(3, severity)]


def opa_report(review: Review, image_description: str) -> dict:
    report: dict = {"image_description": image_description}
    for k, s in enumerate(review.sentences):
        report[str(k)] = {
            "copied_content": s.sentence,
            "score": severity_to_score(s.severity) if s.hallucinated else 4,
            "error_type": "image_recognition_error" if s.hallucinated else "correct",
            "object": [f"{f.wrong} -> {f.right if f.right else '(removed)'}" for f in s.findings],
            "rewritten_content": s.rewritten,
            "reason": s.reason,
        }
    report["Added"] = {"rewritten_content": review.added, "reason": "annotated content the response misses"
                       if review.added else ""}
    return report


def repeats_last_sentence(text: str) -> bool:
    """The seed's ``has_repeating_last_sentence``: split on ".", the last complete sentence occurs in the
    text before it (a plain substring test — an empty last sentence, text ending in "..", counts too)."""
    parts = text.split(".")
    if len(parts) < 2:
        return False
    return parts[-2].strip() in ".".join(parts[:-2])


def repeats_last_word(text: str, limit: int = 30) -> bool:
    """The seed's ``has_repeating_last_word``: the last word occurs more than ``limit`` times among the
    words before the last two."""
    words = text.split()
    return len(words) >= 2 and words[:-2].count(words[-1].strip()) > limit


def repetitive(text: str, limit: int = 30) -> bool:
    return repeats_last_sentence(text) or repeats_last_word(text, limit)


class OpaDpoPipeline(Pipeline):
    name = "opa-dpo"
    output = "opadpo_data.jsonl"
    sample_rollouts = True  # on-policy rollouts are sampled (temperature 1.0), as OPA-DPO's are
    description = "on-policy rollouts → minimal expert revision (per-sentence score, error type) → OPA records"
    version = "1"
    defaults = {"repeat_limit": 30, "questions": 0}

    def process(self, items: list[Item], opts: BuildOptions, source: AnnotationSet) -> list[dict]:
        fb = opts.feedback
        results: list[dict | None] = [None] * len(items)
        live, gts = [], {}
        for i, it in enumerate(items):
            why = usable(it)
            if why:
                results[i] = dropped(why)
                continue
            try:
                gt = clean_reference(fb, it.ann) if it.question is None else ground_truth_answer(it.ann, it.question)
            except FeedbackError as exc:
                results[i] = dropped(f"feedback failed: {exc}")
                continue
            if not gt:
                results[i] = dropped("no clean ground-truth answer")
                continue
            gts[i] = gt
            live.append(i)
        rollouts = self.generate(opts, [items[i].ann.image for i in live], [items[i].prompt(opts) for i in live])
        for i, rollout in zip(live, rollouts):
            ann, question = items[i].ann, items[i].question
            if not rollout.strip():
                results[i] = dropped("empty rollout")
                continue
            if repetitive(rollout, int(self.params(opts)["repeat_limit"])):
                results[i] = dropped("degenerate repetition in rollout")
                continue
            try:
                review = fb.review(ann, rollout) if question is None else review_answer(fb, ann, question, rollout)
            except FeedbackError as exc:
                results[i] = dropped(f"feedback failed: {exc}")
                continue
            if review is None:
                results[i] = dropped("not a yes/no answer")
                continue
            if not review.sentences:
                results[i] = dropped("empty report")
                continue
            revision = review.corrected(with_added=True) if question is None else revised_answer(review, rollout)
            if not revision:
                results[i] = dropped("empty revision")
                continue
            report = opa_report(review, describe_annotations(ann))
            results[i] = kept({"id": items[i].key, "image": ann.image, "queries": items[i].prompt(opts),
                               "standard_response": gts[i], "original_generate_response": rollout.strip(),
                               "AI_pseudo_response": revision, "AI_json_report": json.dumps(report, ensure_ascii=False),
                               "hallucinated": review.hallucinated})
        return results  # type: ignore[return-value]

    def write(self, items: list[Item], opts: BuildOptions, source: AnnotationSet) -> dict[str, int]:
        rows, sft = [], []
        for it in items:
            if it.result["status"] != "kept":
                continue
            d = it.result["data"]
            rel = f"images/{Path(d['image']).name}"
            place_image(d["image"], opts.out / rel, opts.images)
            row = {k: d[k] for k in ("id", "queries", "standard_response", "original_generate_response",
                                     "AI_pseudo_response", "AI_json_report")}
            row["image"] = rel
            rows.append(row)
            sft.append({k: row[k] for k in ("id", "image", "queries", "standard_response", "AI_pseudo_response")})
        write_jsonl(opts.out / self.output, rows)
        write_jsonl(opts.out / "opa_data.jsonl", sft)
        return {"opadpo_data.jsonl (records)": len(rows), "opa_data.jsonl (records)": len(sft),
                "opadpo_data.jsonl (revised rollouts)": sum(1 for it in items if it.result["status"] == "kept"
                                                            and it.result["data"].get("hallucinated"))}
