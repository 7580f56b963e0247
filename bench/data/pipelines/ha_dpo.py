"""HA-DPO data pipeline → the released ``juliozhao/hadpo-data`` format (methods.md §1.3, §1.4).

Steps (the project page's description; the authors' mining code is not released):

1. the model describes each image ("Describe this image in detail.");
2. the feedback model finds the description's hallucinations against the image's annotations and
   corrects them → (corrected = positive, original = negative); descriptions without a hallucination
   give no pair (dropped: "description has no hallucination");
3. style-consistent augmentation: the feedback model rewrites the pair in up to ``variants`` styles,
   the same change applied to both sides; with the offline model each variant is re-checked (positive
   still clean, negative still hallucinated) and discarded otherwise;
4. POPE-style pairs: for every hallucinated object a question "Is there a/an X in the image?" (answer
   no) and as many questions about annotated objects (answer yes) are put to the same model; rows keep
   the model's answer and whether it was ``correct`` — HA-DPO trains on the ``correct == false`` rows.

Output (``OUT/``): ``desc_data.json`` = ``{image_id: {"chosen": [str, ...], "rejected": [str, ...]}}``
(the dict layout the HA-DPO code reads; index 0 is the un-restyled pair), ``pope_data.json`` =
``[{"image_id", "question", "chosen", "reject", "answer", "correct"}]`` with chosen/reject the full
answer sentences "Yes, there is a X in the image." / "No, there is no X in the image." (our wording; the
released file's exact phrasing is unknown), and the images as ``OUT/<image_id><ext>`` (hard links),
which is where :func:`bench.data.formats.load_hadpo` looks for them.
"""

from __future__ import annotations

import re

from bench.data.pipelines.base import (BuildOptions, Item, Pipeline, dropped, image_ext, kept, place_image, usable)
from bench.data.pipelines.sources import AnnotationSet
from bench.feedback import FeedbackError
from bench.io import atomic_write_json
from bench.text import article


def parse_yes_no(text: str) -> str:
    """POPE's rule: "no" if the answer's first sentence holds a no/not word, else "yes"."""
    first = text.strip().split(".")[0].lower()
    return "no" if re.search(r"\b(no|not)\b", first) else "yes"


def yes_no_pair(obj: str, label: str) -> tuple[str, str]:
    yes = f"Yes, there is {article(obj)} {obj} in the image."
    no = f"No, there is no {obj} in the image."
    return (yes, no) if label == "yes" else (no, yes)


class HaDpoPipeline(Pipeline):
    name = "ha-dpo"
    output = "desc_data.json"  # its loader finds pope_data.json beside it
    description = "descriptions → feedback corrections → style-consistent rewrites → desc + POPE-style pairs"
    version = "1"
    defaults = {"variants": 3}

    def process(self, items: list[Item], opts: BuildOptions, source: AnnotationSet) -> list[dict]:
        fb, check = opts.feedback, self.verifier(opts)
        params = self.params(opts)
        results: list[dict | None] = [None] * len(items)
        live = []
        for i, it in enumerate(items):
            why = usable(it)
            if why:
                results[i] = dropped(why)
            else:
                live.append(i)
        descs = self.generate(opts, [items[i].ann.image for i in live], [opts.prompt] * len(live))
        questions: list[tuple[int, str, str]] = []  # (item index, object, label)
        pending: dict[int, dict] = {}
        for i, desc in zip(live, descs):
            ann = items[i].ann
            if not desc.strip():
                results[i] = dropped("empty description")
                continue
            try:
                review = fb.review(ann, desc)
            except FeedbackError as exc:
                results[i] = dropped(f"feedback failed: {exc}")
                continue
            if not review.hallucinated:
                results[i] = dropped("description has no hallucination")
                continue
            corrected = review.corrected()
            if not corrected:
                results[i] = dropped("correction left no sentence")
                continue
            if check and check.review(ann, corrected).hallucinated:
                results[i] = dropped("correction still hallucinated")
                continue
            chosen, rejected = [corrected], [desc.strip()]
            try:
                variants = fb.restyle_pair(ann, corrected, desc.strip(), n=int(params["variants"]))
            except FeedbackError:
                variants = []  # the un-restyled pair is still a pair
            for c, r in variants:
                if check and (check.review(ann, c).hallucinated or not check.review(ann, r).hallucinated):
                    continue
                chosen.append(c)
                rejected.append(r)
            halluc = review.hallucinated_objects()
            present = [o for o in ann.objects if ann.objects[o] > 0][: max(1, len(halluc))]
            for obj in halluc:
                questions.append((i, obj, "no"))
            for obj in present:
                questions.append((i, obj, "yes"))
            pending[i] = {"image_id": ann.image_id, "image": ann.image, "chosen": chosen, "rejected": rejected,
                          "review": review.to_json(), "pope": []}
        answers = self.generate(opts, [items[i].ann.image for i, _, _ in questions],
                                [f"Is there {article(o)} {o} in the image?" for _, o, _ in questions])
        for (i, obj, label), ans in zip(questions, answers):
            chosen_a, reject_a = yes_no_pair(obj, label)
            pending[i]["pope"].append({"image_id": items[i].ann.image_id, "question": f"Is there {article(obj)} {obj} in the image?",
                                       "chosen": chosen_a, "reject": reject_a, "answer": ans.strip(),
                                       "correct": parse_yes_no(ans) == label})
        for i, data in pending.items():
            results[i] = kept(data)
        return results  # type: ignore[return-value]

    def write(self, items: list[Item], opts: BuildOptions, source: AnnotationSet) -> dict[str, int]:
        desc, pope = {}, []
        for it in items:
            if it.result["status"] != "kept":
                continue
            d = it.result["data"]
            key = d["image_id"]
            image_id = int(key) if str(key).isdigit() else key
            desc[str(key)] = {"chosen": d["chosen"], "rejected": d["rejected"]}
            for row in d["pope"]:
                pope.append({**row, "image_id": image_id})
            place_image(d["image"], opts.out / f"{key}{image_ext(d['image'])}", opts.images)
        atomic_write_json(opts.out / self.output, desc)
        atomic_write_json(opts.out / "pope_data.json", pope)
        return {"desc_data.json (images)": len(desc), "pope_data.json (rows)": len(pope),
                "pope_data.json (correct == false)": sum(1 for r in pope if r["correct"] is False)}
