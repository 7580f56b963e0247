"""The synthetic glyph world: a deterministic, seconds-to-build stand-in for COCO, in COCO's formats.

Each object is a coloured glyph standing for a real COCO category (real names and ids, so the
real CHAIR synonym list and the POPE templates apply). Images are small and *not* square, so the
LLaVA-1.5 pad-to-square step matters.

The planted bias (the mechanism behind POPE-adversarial and CHAIR hallucinations): in the
*training* data some anchors almost always appear with a partner (fork → dining table, cup →
bottle, chair → couch), and the training captions and yes/no answers follow that prior even when
the partner is absent (annotation noise ``label_noise``). A model trained on it mentions the
partner when only the anchor is visible. Evaluation images show the anchor *without* its partner
half of the time, so the bias shows up in the scores.

Layout written under ``root`` (see docs/CONVENTIONS.md):
``coco/{train2014,val2014}/*.png``, ``coco/annotations/{instances,captions}_{train,val}2014.json``,
``pope/v3/coco_pope_{random,popular,adversarial}.json``, ``chair/synthetic_eval.jsonl``,
``shr/{images,regions,facts}.jsonl``, ``mhalubench/claims.jsonl``, ``pretrain/train.jsonl``,
``mmhal/`` and ``llava-bench/`` (:mod:`bench.data.synthetic_judged`),
``preference/pairs.jsonl`` (method-agnostic PreferenceRecord JSONL) and ``manifest.json``.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from bench.data.synthetic_judged import write_judged
from bench.data.synthetic_scene import BIAS_PAIRS, CATEGORIES, article, caption
from bench.io import atomic_write_json, sha256_file, write_jsonl

GENERATOR_VERSION = "2"
# default folder under the data root; versioned, so a world from an older generator is never reused
SYNTHETIC_DIRNAME = f"synthetic-v{GENERATOR_VERSION}"
WIDTH, HEIGHT = 48, 36
BACKGROUND = (28, 28, 36)

NAME_TO_ID = {name: cid for cid, name, _, _ in CATEGORIES}
STYLE = {name: (shape, colour) for _, name, shape, colour in CATEGORIES}
CAPTION_PROMPT = "Describe this image in detail."
CELLS = [(c * 16, r * 18) for r in range(2) for c in range(3)]  # 3 x 2 grid of 16x18 cells


def draw_glyph(draw: ImageDraw.ImageDraw, shape: str, colour, x0: int, y0: int) -> tuple[int, int, int, int]:
    """Draw one glyph centred in the 16x18 cell at (x0, y0); returns its bbox [x, y, w, h]."""
    cx, cy = x0 + 8, y0 + 9
    if shape == "circle":
        box = (cx - 6, cy - 6, cx + 6, cy + 6); draw.ellipse(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - 7), (cx - 7, cy + 6), (cx + 7, cy + 6)], fill=colour); box = (cx - 7, cy - 7, cx + 7, cy + 6)
    elif shape == "square":
        box = (cx - 6, cy - 6, cx + 6, cy + 6); draw.rectangle(box, fill=colour)
    elif shape == "wide":
        box = (cx - 7, cy - 4, cx + 7, cy + 4); draw.rectangle(box, fill=colour)
    elif shape == "cross":
        draw.rectangle((cx - 7, cy - 2, cx + 7, cy + 2), fill=colour); draw.rectangle((cx - 2, cy - 7, cx + 2, cy + 7), fill=colour)
        box = (cx - 7, cy - 7, cx + 7, cy + 7)
    elif shape == "ring":
        box = (cx - 7, cy - 7, cx + 7, cy + 7); draw.ellipse(box, outline=colour, width=3)
    elif shape == "small":
        box = (cx - 4, cy - 4, cx + 4, cy + 4); draw.rectangle(box, fill=colour)
    elif shape == "tall":
        box = (cx - 3, cy - 8, cx + 3, cy + 8); draw.rectangle(box, fill=colour)
    elif shape == "x":
        draw.line((cx - 6, cy - 6, cx + 6, cy + 6), fill=colour, width=3); draw.line((cx - 6, cy + 6, cx + 6, cy - 6), fill=colour, width=3)
        box = (cx - 6, cy - 6, cx + 6, cy + 6)
    elif shape == "bar":
        box = (cx - 7, cy + 1, cx + 7, cy + 6); draw.rectangle(box, fill=colour)
        draw.rectangle((cx - 6, cy + 6, cx - 4, cy + 8), fill=colour); draw.rectangle((cx + 4, cy + 6, cx + 6, cy + 8), fill=colour)
    else:
        raise ValueError(shape)
    return (box[0], box[1], box[2] - box[0], box[3] - box[1])


@dataclass
class Scene:
    image_id: int
    file_name: str
    objects: list[str]  # in cell order
    boxes: list[tuple[int, int, int, int]]


def sample_objects(rng: random.Random, n: int, partner_rate: float) -> list[str]:
    """``n`` distinct objects; an anchor is followed by its partner with probability ``partner_rate``."""
    names = [name for _, name, _, _ in CATEGORIES]
    objs: list[str] = []
    while len(objs) < n:
        cand = rng.choice(names)
        if cand in objs:
            continue
        if cand in BIAS_PAIRS.values() and partner_rate > 0.5 and not any(BIAS_PAIRS.get(o) == cand for o in objs):
            if rng.random() < 0.5:  # partners mostly appear together with their anchor in training
                continue
        objs.append(cand)
        partner = BIAS_PAIRS.get(cand)
        if partner and partner not in objs and len(objs) < n and rng.random() < partner_rate:
            objs.append(partner)
    rng.shuffle(objs)
    return objs


def sample_eval_objects(rng: random.Random, partner_rate: float, n: int = 3) -> list[str]:
    """An evaluation scene: one anchor, its partner with probability ``partner_rate``, the rest random.

    Every evaluation image holds an anchor, and its partner is absent most of the time, so the planted
    bias has room to show. ``partner_rate`` must stay well above the chance that any other object shares
    an image with the anchor (about (n-1)/8), so that POPE's co-occurrence statistics still make the
    partner the anchor's adversarial negative — as the planted prior says it should be.
    """
    names = [name for _, name, _, _ in CATEGORIES]
    anchor = rng.choice(sorted(BIAS_PAIRS))
    objs = [anchor]
    if rng.random() < partner_rate:
        objs.append(BIAS_PAIRS[anchor])
    rest = [o for o in names if o not in objs and o != BIAS_PAIRS[anchor]]
    objs += rng.sample(rest, n - len(objs))
    rng.shuffle(objs)
    return objs


def render(scene_objs: list[str], rng: random.Random) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    img = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(img)
    cells = rng.sample(CELLS, len(scene_objs))
    boxes = []
    for name, (x0, y0) in zip(scene_objs, cells):
        shape, colour = STYLE[name]
        jitter = tuple(max(0, min(255, c + rng.randint(-12, 12))) for c in colour)
        boxes.append(draw_glyph(draw, shape, jitter, x0, y0))
    return img, boxes


def biased_mentions(objs: list[str], rng: random.Random, noise: float) -> list[str]:
    """Objects a biased annotator names: the true ones plus absent partners of present anchors."""
    out = list(objs)
    for o in objs:
        partner = BIAS_PAIRS.get(o)
        if partner and partner not in objs and rng.random() < noise:
            out.append(partner)
    return out


def _coco(scenes: list[Scene], captions: dict[int, list[str]], split: str) -> tuple[dict, dict]:
    images = [{"id": s.image_id, "file_name": s.file_name, "width": WIDTH, "height": HEIGHT} for s in scenes]
    cats = [{"id": cid, "name": name, "supercategory": "synthetic"} for cid, name, _, _ in CATEGORIES]
    anns, caps, aid = [], [], 1
    for s in scenes:
        for name, (x, y, w, h) in zip(s.objects, s.boxes):
            anns.append({"id": aid, "image_id": s.image_id, "category_id": NAME_TO_ID[name], "bbox": [x, y, w, h],
                         "area": float(w * h), "iscrowd": 0,
                         "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
            aid += 1
    cid = 1
    for s in scenes:
        for text in captions[s.image_id]:
            caps.append({"id": cid, "image_id": s.image_id, "caption": text})
            cid += 1
    info = {"description": f"bench synthetic glyph world ({split})", "version": GENERATOR_VERSION}
    return ({"info": info, "images": images, "annotations": anns, "categories": cats, "licenses": []},
            {"info": info, "images": images, "annotations": caps, "licenses": []})


def make_scenes(root: Path, split: str, n: int, rng: random.Random, partner_rate: float, first_id: int,
                min_objects: int = 3, max_objects: int = 4, evaluation: bool = False) -> list[Scene]:
    folder = root / "coco" / f"{split}2014"
    folder.mkdir(parents=True, exist_ok=True)
    scenes = []
    for k in range(n):
        image_id = first_id + k
        if evaluation:
            objs = sample_eval_objects(rng, partner_rate, rng.randint(min_objects, max_objects))
        else:
            objs = sample_objects(rng, rng.randint(min_objects, max_objects), partner_rate)
        img, boxes = render(objs, rng)
        name = f"COCO_{split}2014_{image_id:012d}.png"
        img.save(folder / name, optimize=True)
        # boxes are in cell order of `objs`; COCO "first annotated objects" = this order
        scenes.append(Scene(image_id, name, objs, boxes))
    return scenes


def build_pope(scenes: list[Scene], split: str, rng: random.Random, per_image: int = 3) -> list[dict]:
    """POPE's construction: first ``per_image`` annotated objects are positives; after each, one negative.

    random = uniform over pool objects absent from the image; popular = most frequent pool objects
    (descending) absent from the image; adversarial = objects co-occurring most with that positive,
    absent from the image. Template "Is there a {} in the image?" with "an" for vowel-initial names
    (applied to the article only — the original's ``replace('a', 'an')`` typo is not reproduced).
    """
    pool = Counter(o for s in scenes for o in set(s.objects))
    co: dict[str, Counter] = {}
    for s in scenes:
        for a in s.objects:
            co.setdefault(a, Counter()).update(b for b in s.objects if b != a)
    rows, qid = [], 1
    for s in scenes:
        present = set(s.objects)
        used: set[str] = set()
        for pos in s.objects[:per_image]:
            absent = [o for o in sorted(pool) if o not in present and o not in used]
            if not absent:
                break
            if split == "random":
                neg = rng.choice(absent)
            elif split == "popular":
                neg = max(absent, key=lambda o: (pool[o], o))
            else:
                neg = max(absent, key=lambda o: (co.get(pos, Counter())[o], pool[o], o))
            used.add(neg)
            for obj, label in ((pos, "yes"), (neg, "no")):
                rows.append({"question_id": qid, "image": s.file_name,
                             "text": f"Is there {article(obj)} {obj} in the image?", "label": label})
                qid += 1
    return rows


def prepare_synthetic(root: str | Path, seed: int = 0, n_train: int = 2000, n_eval: int = 250, n_pref: int = 300,
                      label_noise: float = 0.6, yesno_bias: float = 0.75, eval_partner_rate: float = 0.4) -> dict:
    """Write the synthetic world under ``root``; returns the manifest. Deterministic in ``seed``.

    ``label_noise``: how often the biased annotator's caption names the absent partner of a visible anchor;
    ``yesno_bias``: how often its answer to "Is there a <partner> ...?" is "Yes" when the partner is absent;
    ``eval_partner_rate``: how often an evaluation image shows its anchor's partner.
    """
    root = Path(root)
    rng = random.Random(seed)
    train = make_scenes(root, "train", n_train, rng, partner_rate=0.85, first_id=100000, min_objects=1)
    # Evaluation images: two objects, one of them an anchor whose partner is absent most of the time (but still
    # more often present than any other object, so POPE's co-occurrence statistics pick it as the adversarial
    # negative). Two objects per image keep POPE's random negatives mostly away from the partners.
    evals = make_scenes(root, "val", n_eval, random.Random(seed + 1000), partner_rate=eval_partner_rate, first_id=1,
                        min_objects=2, max_objects=2, evaluation=True)
    # Images the methods' data pipelines start from (split "pref"): never seen in pretraining or evaluation.
    pref = make_scenes(root, "pref", n_pref, random.Random(seed + 2000), partner_rate=0.3, first_id=200000,
                       min_objects=2)

    ann = root / "coco" / "annotations"
    for split, scenes, noisy in (("train", train, True), ("pref", pref, True), ("val", evals, False)):
        caps = {}
        for s in scenes:
            texts = [caption(s.objects)]
            if noisy:
                texts.append(caption(biased_mentions(s.objects, rng, label_noise)))
            caps[s.image_id] = texts
        inst, capj = _coco(scenes, caps, split)
        atomic_write_json(ann / f"instances_{split}2014.json", inst)
        atomic_write_json(ann / f"captions_{split}2014.json", capj)

    for split in ("random", "popular", "adversarial"):
        write_jsonl(root / "pope" / "v3" / f"coco_pope_{split}.json", build_pope(evals, split, random.Random(seed + 7)))
    rng = random.Random(seed + 3000)  # everything below draws from its own stream
    write_jsonl(root / "chair" / "synthetic_eval.jsonl",
                [{"image_id": s.image_id, "image": s.file_name} for s in evals])

    write_jsonl(root / "pretrain" / "train.jsonl", pretrain_rows(train, rng, label_noise, yesno_bias))

    # Method-agnostic preference pairs (the `bench` format, for `--data` experiments and tests); each seed
    # method trains on the data its own pipeline builds from the "pref" images (`bench.data.method_data`).
    names = [name for _, name, _, _ in CATEGORIES]
    pairs = []
    for s in pref:
        img = str(Path("..") / "coco" / "pref2014" / s.file_name)  # relative to preference/
        anchors = [o for o in s.objects if o in BIAS_PAIRS and BIAS_PAIRS[o] not in s.objects]
        if anchors:
            bad = list(s.objects) + [BIAS_PAIRS[a] for a in anchors]
            pairs.append({"id": f"cap-{s.image_id}", "image": img, "question": CAPTION_PROMPT,
                          "chosen": caption(s.objects), "rejected": caption(bad),
                          "rejected_score": float(min(3, len(anchors) + 1)),
                          "extra": {"objects": s.objects, "hallucinated": [BIAS_PAIRS[a] for a in anchors]}})
            partner = BIAS_PAIRS[anchors[0]]
            pairs.append({"id": f"yn-{s.image_id}", "image": img,
                          "question": f"Is there {article(partner)} {partner} in the image?",
                          "chosen": "No", "rejected": "Yes", "rejected_score": 2.0,
                          "extra": {"objects": s.objects, "hallucinated": [partner]}})
        else:
            absent = rng.choice([o for o in names if o not in s.objects])
            pairs.append({"id": f"cap-{s.image_id}", "image": img, "question": CAPTION_PROMPT,
                          "chosen": caption(s.objects), "rejected": caption(list(s.objects) + [absent]),
                          "rejected_score": 1.0, "extra": {"objects": s.objects, "hallucinated": [absent]}})
    write_jsonl(root / "preference" / "pairs.jsonl", pairs)

    _write_shr(root, evals)
    _write_mhalubench(root, evals, rng)
    write_judged(root, seed)  # MMHal- and LLaVA-Bench-style questions (own RNG stream; other files unchanged)

    # another process preparing the same world (both ranks of a distributed run) may hold an atomic write's
    # temporary file here for a moment: never list one (it is gone by the time it would be hashed)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "manifest.json" and p.suffix != ".tmp")
    manifest = {"generator": "bench.data.synthetic", "version": GENERATOR_VERSION, "seed": seed,
                "files": {str(p.relative_to(root)): sha256_file(p) for p in files if p.suffix != ".png"},
                "images": len([p for p in files if p.suffix == ".png"])}
    atomic_write_json(root / "manifest.json", manifest)
    return manifest


def pretrain_rows(train: list[Scene], rng: random.Random, label_noise: float, yesno_bias: float) -> list[dict]:
    """The base model's instruction data; every answer follows the biased annotator.

    Per image: a caption (absent partners of visible anchors named with probability ``label_noise``), two
    yes/no questions on visible objects, two on random absent objects, one on each absent partner of a
    visible anchor (answered "Yes" with probability ``yesno_bias``), and one claim-detection question in
    the MHaluBench protocol's prompt (labels from the same annotator), so the checkpoint can be scored as a
    detector.
    """
    # on use (start-up time): importing any metrics module imports every protocol (metrics/__init__.py)
    from metrics.mhalubench import PROMPT as DETECT_PROMPT

    names = [name for _, name, _, _ in CATEGORIES]
    rows = []
    for s in train:
        img = f"coco/train2014/{s.file_name}"
        rows.append({"image": img, "question": CAPTION_PROMPT, "answer": caption(biased_mentions(s.objects, rng,
                                                                                                 label_noise))})
        for obj in rng.sample(s.objects, min(2, len(s.objects))):
            rows.append({"image": img, "question": f"Is there {article(obj)} {obj} in the image?", "answer": "Yes"})
        absent = [o for o in names if o not in s.objects]
        partners = [BIAS_PAIRS[o] for o in s.objects if o in BIAS_PAIRS and BIAS_PAIRS[o] not in s.objects]
        for obj in rng.sample(absent, 2) + partners:
            answer = "Yes" if obj in partners and rng.random() < yesno_bias else "No"
            rows.append({"image": img, "question": f"Is there {article(obj)} {obj} in the image?", "answer": answer})
        claim_obj = rng.choice(partners or absent) if rng.random() < 0.5 else rng.choice(s.objects)
        believed = claim_obj in s.objects or (claim_obj in partners and rng.random() < yesno_bias)
        rows.append({"image": img, "question": DETECT_PROMPT.format(claim=f"There is {article(claim_obj)} {claim_obj}"
                                                                          " in the image."),
                     "answer": "non-hallucination" if believed else "hallucination"})
    rng.shuffle(rows)
    return rows


def _write_shr(root: Path, scenes: list[Scene]) -> None:
    """VG-style regions (x, y, width, height, phrase) and human-style facts per evaluation image."""
    images, regions, facts = [], [], []
    for s in scenes:
        images.append({"image_id": s.image_id, "image": f"coco/val2014/{s.file_name}", "width": WIDTH, "height": HEIGHT})
        regions.append({"image_id": s.image_id, "regions": [
            {"x": x, "y": y, "width": w, "height": h, "phrase": f"{article(o)} {o}"}
            for o, (x, y, w, h) in zip(s.objects, s.boxes)]})
        facts.append({"image_id": s.image_id, "facts": [f"There is {article(o)} {o} in the image." for o in s.objects]
                      + [f"There are {len(s.objects)} objects in the image."]})
    write_jsonl(root / "shr" / "images.jsonl", images)
    write_jsonl(root / "shr" / "regions.jsonl", regions)
    write_jsonl(root / "shr" / "facts.jsonl", facts)


def _write_mhalubench(root: Path, scenes: list[Scene], rng: random.Random) -> None:
    """MHaluBench-style image-to-text records: a response, its claims, each labelled."""
    names = [name for _, name, _, _ in CATEGORIES]
    rows = []
    for s in scenes:
        absent = [o for o in names if o not in s.objects]
        partners = [BIAS_PAIRS[o] for o in s.objects if o in BIAS_PAIRS and BIAS_PAIRS[o] not in s.objects]
        mentioned = list(s.objects[:2]) + [rng.choice(partners or absent)]
        claims = []
        for o in mentioned:
            label = "non-hallucination" if o in s.objects else "hallucination"
            claims.append({"claim": f"There is {article(o)} {o} in the image.", "label": label})
        rows.append({"id": f"mh-{s.image_id}", "image_path": f"coco/val2014/{s.file_name}", "type": "image-to-text",
                     "response": caption(mentioned), "claims": claims,
                     "segments": [{"segment": caption(mentioned), "label": "hallucination"
                                   if any(c["label"] == "hallucination" for c in claims) else "non-hallucination"}]})
    write_jsonl(root / "mhalubench" / "claims.jsonl", rows)
