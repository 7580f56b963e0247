"""HSA-DPO data pipeline → the released ``WenyiXiao/HSA-DPO`` formats (methods.md §3.3, §3.4).

1. The model answers ("Describe this image in detail." by default).
2. Sentence-level detection by the feedback model: per sentence hallucinated or not, type (object /
   attribute / relationship) and severity 1–3 (Minor / Moderate / Major) — written in the released
   *detection* format, one record per sentence (``hsa_dpo_detection.jsonl``).
3. Detect-then-rewrite: flagged sentences are rewritten (the feedback model's minimal fix), the rest
   kept → chosen = rewritten response, rejected = original response. Responses without a flagged
   sentence give no pair.
4. ``rejected_score`` = an aggregation of the flagged sentences' severities. The paper's formula is
   unknown (methods.md §3.4, §7); ours is a documented choice, ``score`` option:

   * ``max`` (default): the worst sentence's severity, in [1, 3] — a response is as bad as its worst
     error, and the value stays on the detection scale (the synthetic pairs use the same 1–3 range);
   * ``mean``: mean severity of the flagged sentences, in [1, 3];
   * ``sum``: total severity (grows with the number of errors, unbounded).

   ``chosen_score`` is not written (HSA-DPO's default ``use_chosen_score False``).

Output (``OUT/``): ``hsa_dpo_preference.jsonl`` = ``{"id", "question", "chosen", "rejected",
"rejected_score"}`` with sequential integer ids and the images as ``OUT/<id><ext>`` (the released
``hsa_dpo_imgs.tar.gz`` layout, read by :func:`bench.data.loaders.load_preference_file`);
``hsa_dpo_detection.jsonl`` = ``{"id", "image", "conversations": [{"from": "human", "value":
"<image>\\nDescription to Assess:\\n<sentence>"}, {"from": "gpt", "value": "NO HALLUCINATION" | "Tags:
…Scores: …"}]}`` with images under ``OUT/images/`` — the detection layout as seen in a third-party
copy of the released file (methods.md §3.3, [paper-2nd]); whitespace details are our reading.

With ``questions`` = N > 0 (the embedded ``tiny-llava`` uses 1), each image also yields N yes/no object
questions as instruction items (the model's answer is judged as a one-sentence claim; a hallucinated "Yes" is rewritten to "No"; these
items are not exported to the detection file); see :mod:`bench.data.pipelines.questions`.
"""

from __future__ import annotations

from pathlib import Path

from bench.data.pipelines.base import (BuildOptions, Item, Pipeline, dropped, image_ext, kept, place_image, usable)
from bench.data.pipelines.questions import review_answer, revised_answer
from bench.data.pipelines.sources import AnnotationSet
from bench.errors import BenchError
from bench.feedback import FeedbackError, Review
from bench.io import write_jsonl

SEVERITY_NAMES = {1: "Minor (1 point)", 2: "Moderate (2 points)", 3: "Major (3 points)"}
AGGREGATIONS = ("max", "mean", "sum")


def aggregate_severity(severities: list[int], how: str = "max") -> float:
    if not severities:
        raise ValueError("no flagged sentence")
    if how == "max":
        return float(max(severities))
    if how == "mean":
        return float(sum(severities)) / len(severities)
    if how == "sum":
        return float(sum(severities))
    raise BenchError(f"unknown rejected_score aggregation {how!r}; choose from {AGGREGATIONS}")


def detection_answer(review: Review, index: int) -> str:
    """The released detector's answer for one sentence: "NO HALLUCINATION" or tagged findings."""
    s = review.sentences[index]
    if not s.findings:
        return "NO HALLUCINATION"
    tags, scores = ["Tags:"], ["Scores:"]
    for kind in ("object", "attribute", "relationship"):
        group = [f for f in s.findings if f.kind == kind]
        if not group:
            continue
        tags.append(f"<{kind}>")
        scores.append(f"<{kind}>")
        for k, f in enumerate(group, start=1):
            tags.append(f"{k} . {f.reason}")
            scores.append(f"{k} . {f.span}: {SEVERITY_NAMES[max(1, min(3, f.severity))]}: {f.reason}")
    return "\n".join(tags + scores)


class HsaDpoPipeline(Pipeline):
    name = "hsa-dpo"
    output = "hsa_dpo_preference.jsonl"
    description = "responses → sentence detection (type, severity) → rewrite flagged sentences → weighted pairs"
    version = "1"
    defaults = {"score": "max", "questions": 0}

    def process(self, items: list[Item], opts: BuildOptions, source: AnnotationSet) -> list[dict]:
        how = str(self.params(opts)["score"])
        if how not in AGGREGATIONS:
            raise BenchError(f"unknown rejected_score aggregation {how!r}; choose from {AGGREGATIONS}")
        fb, check = opts.feedback, self.verifier(opts)
        results: list[dict | None] = [None] * len(items)
        live = []
        for i, it in enumerate(items):
            why = usable(it)
            if why:
                results[i] = dropped(why)
            else:
                live.append(i)
        texts = self.generate(opts, [items[i].ann.image for i in live], [items[i].prompt(opts) for i in live])
        for i, text in zip(live, texts):
            ann, question = items[i].ann, items[i].question
            if not text.strip():
                results[i] = dropped("empty response")
                continue
            try:
                review = fb.review(ann, text) if question is None else review_answer(fb, ann, question, text)
            except FeedbackError as exc:
                results[i] = dropped(f"feedback failed: {exc}")
                continue
            if review is None:
                results[i] = dropped("not a yes/no answer")
                continue
            # the detector's data are sentences of descriptions; yes/no answers are not exported to it
            detection = [] if question is not None else [{"sentence": s.sentence, "answer": detection_answer(review, k)}
                                                         for k, s in enumerate(review.sentences)]
            base = {"image": ann.image, "image_id": ann.image_id, "question": items[i].prompt(opts),
                    "detection": detection}
            if not review.hallucinated:
                results[i] = dropped("no hallucinated sentence", base)
                continue
            chosen = review.corrected() if question is None else revised_answer(review, text)
            if not chosen or chosen == text.strip():
                results[i] = dropped("rewrite left no sentence" if not chosen else "rewrite changed nothing", base)
                continue
            if check and question is None and check.review(ann, chosen).hallucinated:
                results[i] = dropped("rewrite still hallucinated", base)
                continue
            sev = [s.severity for s in review.sentences if s.hallucinated]
            results[i] = kept({**base, "chosen": chosen, "rejected": text.strip(), "severities": sev,
                               "rejected_score": aggregate_severity(sev, how)})
        return results  # type: ignore[return-value]

    def write(self, items: list[Item], opts: BuildOptions, source: AnnotationSet) -> dict[str, int]:
        prefs, dets = [], []
        for it in items:
            d = it.result["data"]
            if d.get("detection"):
                rel = f"images/{Path(d['image']).name}"
                place_image(d["image"], opts.out / rel, opts.images)
                for s in d["detection"]:
                    dets.append({"id": len(dets), "image": rel, "conversations": [
                        {"from": "human", "value": f"<image>\nDescription to Assess:\n{s['sentence']}"},
                        {"from": "gpt", "value": s["answer"]}]})
            if it.result["status"] != "kept":
                continue
            rid = len(prefs)
            place_image(d["image"], opts.out / f"{rid}{image_ext(d['image'])}", opts.images)
            prefs.append({"id": rid, "question": d["question"], "chosen": d["chosen"], "rejected": d["rejected"],
                          "rejected_score": d["rejected_score"]})
        write_jsonl(opts.out / self.output, prefs)
        write_jsonl(opts.out / "hsa_dpo_detection.jsonl", dets)
        return {"hsa_dpo_preference.jsonl (pairs)": len(prefs), "hsa_dpo_detection.jsonl (sentences)": len(dets),
                "hsa_dpo_detection.jsonl (hallucinated)": sum(1 for r in dets
                                                              if r["conversations"][1]["value"] != "NO HALLUCINATION")}
