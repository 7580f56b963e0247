"""Annotated images the data pipelines start from (:class:`bench.feedback.ImageAnnotations`).

* ``coco`` — ``<root>/coco/annotations/instances_<split>2014.json`` (+ ``captions_<split>2014.json``),
  images ``<root>/coco/<split>2014/<file_name>``; the synthetic world (``bench data prepare``) has the
  same layout, so it is this source too. Object head words = the categories' CHAIR head words, with
  instance counts. Default split ``train``: the ``val2014`` images are the POPE / CHAIR evaluation
  images and must not become training data.
* ``vg`` — Visual Genome as fetched by ``bench data fetch vg`` (+ ``vg-images``):
  ``<root>/vg/image_data.json``, ``<root>/vg/region_descriptions.json`` (streamed, it is large), images
  ``<root>/vg/images/<id>.jpg``; only images present on disk are used. Objects are read from the region
  phrases with the CHAIR word lists (no counts).

Co-occurrence counts (how often two objects share an image) and object frequencies over the whole
annotation file feed the offline feedback model's hallucination injection.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import BenchError, DataError
from bench.feedback import ImageAnnotations
from bench.io import iter_json_array, read_json
from bench.text import find_mentions
from bench.vocab import synonyms


@dataclass
class AnnotationSet:
    name: str
    images: list[ImageAnnotations]
    cooccurrence: dict[str, Counter] = field(default_factory=dict)
    frequency: Counter = field(default_factory=Counter)
    files: list[str] = field(default_factory=list)  # annotation files read (for the summary)


def _cooccurrence(sets: list[set[str]]) -> tuple[dict[str, Counter], Counter]:
    co: dict[str, Counter] = {}
    freq: Counter = Counter()
    for objs in sets:
        freq.update(objs)
        for a in objs:
            co.setdefault(a, Counter()).update(b for b in objs if b != a)
    return co, freq


def _sample(items: list, limit: int | None, seed: int) -> list:
    if limit is None or limit >= len(items):
        return items
    keep = set(random.Random(seed).sample(range(len(items)), limit))
    return [x for i, x in enumerate(items) if i in keep]


def coco_source(root: str | Path, split: str = "train", limit: int | None = None, seed: int = 0,
                captions: bool = True) -> AnnotationSet:
    root = Path(root)
    inst_path = root / "coco" / "annotations" / f"instances_{split}2014.json"
    if not inst_path.exists():
        raise BenchError(f"{inst_path}: COCO annotations missing (run `python -m bench data prepare` for the"
                         f" synthetic world, or `python -m bench data fetch coco-val2014 --root {root}`)")
    inst = read_json(inst_path)
    _, inverse = synonyms()
    cats = {}
    for c in inst.get("categories", []):
        if c["name"] not in inverse:
            raise DataError(inst_path, f"category {c['name']!r} is not a COCO category of the CHAIR synonym list")
        cats[c["id"]] = inverse[c["name"]]
    objects: dict[int, Counter] = {}
    for a in inst.get("annotations", []):
        objects.setdefault(a["image_id"], Counter())[cats[a["category_id"]]] += 1
    caps: dict[int, list[str]] = {}
    cap_path = root / "coco" / "annotations" / f"captions_{split}2014.json"
    if captions and cap_path.exists():
        for a in read_json(cap_path).get("annotations", []):
            caps.setdefault(a["image_id"], []).append(a["caption"].strip())
    co, freq = _cooccurrence([set(c) for c in objects.values()])
    images = []
    for img in sorted(inst.get("images", []), key=lambda r: r["id"]):
        objs = objects.get(img["id"], Counter())
        images.append(ImageAnnotations(str(img["id"]), str(root / "coco" / f"{split}2014" / img["file_name"]),
                                       dict(objs), counts_known=True, captions=caps.get(img["id"], []),
                                       width=img.get("width"), height=img.get("height")))
    files = [str(inst_path)] + ([str(cap_path)] if captions and cap_path.exists() else [])
    return AnnotationSet(f"coco:{split}2014", _sample(images, limit, seed), co, freq, files)


def vg_source(root: str | Path, limit: int | None = None, seed: int = 0,
              image_ids: set[str] | None = None) -> AnnotationSet:
    root = Path(root)
    meta_path, reg_path = root / "vg" / "image_data.json", root / "vg" / "region_descriptions.json"
    for p in (meta_path, reg_path):
        if not p.exists():
            raise BenchError(f"{p}: Visual Genome metadata missing (run `python -m bench data fetch vg --root {root}`)")
    meta = {}
    for row in iter_json_array(meta_path):
        iid = str(row.get("image_id", row.get("id")))
        if (root / "vg" / "images" / f"{iid}.jpg").exists() and (image_ids is None or iid in image_ids):
            meta[iid] = row
    if not meta:
        raise BenchError(f"{root / 'vg' / 'images'}: no Visual Genome images on disk (run"
                         f" `python -m bench data fetch vg-images --root {root}`)")
    images, sets = [], []
    for row in iter_json_array(reg_path):
        iid = str(row.get("id", row.get("image_id")))
        if iid not in meta:
            continue
        phrases = [r.get("phrase", "").strip() for r in row.get("regions", []) if r.get("phrase", "").strip()]
        heads: dict[str, int] = {}
        for ph in phrases:
            for m in find_mentions(ph):
                heads.setdefault(m.head, 1)
        sets.append(set(heads))
        m = meta[iid]
        images.append(ImageAnnotations(iid, str(root / "vg" / "images" / f"{iid}.jpg"), heads, counts_known=False,
                                       regions=phrases, width=m.get("width"), height=m.get("height")))
    images.sort(key=lambda a: int(a.image_id) if a.image_id.isdigit() else a.image_id)
    co, freq = _cooccurrence(sets)
    return AnnotationSet("vg", _sample(images, limit, seed), co, freq, [str(meta_path), str(reg_path)])


def load_source(name: str, root: str | Path, split: str = "train", limit: int | None = None,
                seed: int = 0) -> AnnotationSet:
    if name == "coco":
        return coco_source(root, split=split, limit=limit, seed=seed)
    if name == "vg":
        return vg_source(root, limit=limit, seed=seed)
    raise BenchError(f"unknown annotation source {name!r}; choose coco (also the synthetic world) or vg")
