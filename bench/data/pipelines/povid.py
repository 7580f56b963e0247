"""POVID data pipeline → the released ``YiyangAiLab/POVID_preference_data_for_VLLMs`` format
(methods.md §2.3, §2.4).

1. Preferred = a ground-truth answer: the image's first reference caption that the feedback model
   finds free of hallucination (else the correction of the first caption). The paper uses
   LLaVA-Instruct detailed answers; with COCO / the synthetic world the captions stand in for them.
2. Dispreferred = the same answer with ``injections`` plausible hallucinations injected by the feedback
   model (the paper's GPT-4V step; offline: co-occurring absent objects, substitutions, counts). With
   the offline model the result is re-checked and dropped if the injection is not detectable.
3. The second dispreferred kind (the model's output under diffusion noise) is produced online during
   POVID's stage 2 training (``methods/povid.py``), so this pipeline needs no model (``--model`` is
   ignored).

Output: ``OUT/povid_preference.json``, a JSON list of ``{"id", "image", "conversations": [{"from":
"human", "value": "<image>\\n<question>"}, {"from": "gpt", "value": chosen}], "rejected_conversations":
[same human turn, {"from": "gpt", "value": rejected}]}``; ``image`` is relative to ``OUT`` (images are
placed under ``OUT/images/``); ``id`` is the image file's stem (``COCO_train2014_000000353952`` style).

With ``questions`` = N > 0 (the embedded ``tiny-llava`` uses 1), each image also yields N yes/no object
questions as instruction items (ground truth from the annotations, the injected hallucination affirms the absent co-occurring object); see :mod:`bench.data.pipelines.questions`.
"""

from __future__ import annotations

from pathlib import Path

from bench.data.pipelines.base import (BuildOptions, Item, Pipeline, clean_reference, dropped, kept, place_image,
                                       usable)
from bench.data.pipelines.sources import AnnotationSet
from bench.feedback import FeedbackError
from bench.data.pipelines.questions import asked_object, ground_truth_answer, review_answer
from bench.io import atomic_write_json, sha256_text


def item_seed(seed: int, image_id: str) -> int:
    return int(sha256_text(f"{seed}:{image_id}")[:8], 16)


class PovidPipeline(Pipeline):
    name = "povid"
    output = "povid_preference.json"
    needs_model = False
    description = "ground-truth answers → injected hallucinations → (gt, corrupted) pairs"
    version = "1"
    defaults = {"injections": 1, "questions": 0}

    def process(self, items: list[Item], opts: BuildOptions, source: AnnotationSet) -> list[dict]:
        fb, check = opts.feedback, self.verifier(opts)
        out = []
        for it in items:
            ann = it.ann
            why = usable(it)
            if why:
                out.append(dropped(why))
                continue
            if it.question is not None:
                out.append(self._question_pair(it, opts, check))
                continue
            try:
                gt = clean_reference(fb, ann)
            except FeedbackError as exc:
                out.append(dropped(f"feedback failed: {exc}"))
                continue
            if not gt:
                out.append(dropped("no clean ground-truth answer"))
                continue
            try:
                inj = fb.inject(ann, gt, seed=item_seed(opts.seed, ann.image_id), n=int(self.params(opts)["injections"]))
            except FeedbackError as exc:
                out.append(dropped(f"injection failed: {exc}"))
                continue
            if check and not check.review(ann, inj.text).hallucinated:
                out.append(dropped("injection not detectable"))
                continue
            out.append(kept({"id": Path(ann.image).stem, "image": ann.image, "question": opts.prompt, "chosen": gt,
                             "rejected": inj.text, "injected": [f.__dict__ for f in inj.injected]}))
        return out

    def _question_pair(self, it: Item, opts: BuildOptions, check) -> dict:
        """A yes/no instruction item: ground truth from the annotations; the injected hallucination affirms the
        absent co-occurring object the question asks about (questions only ask about absent objects)."""
        gt = ground_truth_answer(it.ann, it.question)
        if gt != "No":
            return dropped("question about a present object: nothing to inject" if gt else "not a yes/no question")
        if check is not None:
            review = review_answer(check, it.ann, it.question, "Yes")
            if review is None or not review.hallucinated:
                return dropped("injection not detectable")
        return kept({"id": f"{Path(it.ann.image).stem}#{it.key.rsplit('#', 1)[-1]}", "image": it.ann.image,
                     "question": it.question, "chosen": gt, "rejected": "Yes",
                     "injected": [{"kind": "object", "span": "Yes", "wrong": asked_object(it.question), "right": None,
                                   "severity": 2, "reason": "affirms an absent co-occurring object"}]})

    def write(self, items: list[Item], opts: BuildOptions, source: AnnotationSet) -> dict[str, int]:
        rows = []
        for it in items:
            if it.result["status"] != "kept":
                continue
            d = it.result["data"]
            rel = f"images/{Path(d['image']).name}"
            place_image(d["image"], opts.out / rel, opts.images)
            human = {"from": "human", "value": f"<image>\n{d['question']}"}
            rows.append({"id": d["id"], "image": rel,
                         "conversations": [human, {"from": "gpt", "value": d["chosen"]}],
                         "rejected_conversations": [dict(human), {"from": "gpt", "value": d["rejected"]}]})
        atomic_write_json(opts.out / self.output, rows)
        return {"povid_preference.json (pairs)": len(rows)}
