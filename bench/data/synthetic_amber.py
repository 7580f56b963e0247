"""AMBER-style and Object-HalBench-style rows for the synthetic glyph world, derived on first use.

The glyph world (:mod:`bench.data.synthetic`) is left untouched: these files are *derived* from its
evaluation images and COCO-format annotations (``coco/annotations/instances_val2014.json``) with their own
random stream (``random.Random(manifest seed + 5000)``), written under the same data root, and listed with
their sha256 in a manifest of their own. The AMBER and Object HalBench protocols call :func:`ensure_amber` /
:func:`ensure_objhal` when their data root is a synthetic world, so ``bench run --benchmarks amber-nosim,objhal``
works offline on a world built before this module existed.

AMBER (``<root>/amber/``, the released formats): ``annotations.json`` (ids 1..N in order: one generative row
per image, ``truth`` = its objects, ``hallu`` = its anchor's absent partner plus two other absent objects;
then per image six yes/no rows — existence yes + no (the absent partner when there is one), number,
colour state, action, and left/right or above/below relation), ``relation.json`` (association words such
as couch → sofa), ``safe_words.txt``, ``query_all.json`` and ``images/AMBER_<k>.png`` (copies of the
evaluation images). AMBER extracts single nouns, so "dining table" is the object word ``table``.

Object HalBench (``<root>/objhal/questions.jsonl``): one description request per evaluation image with a
prompt drawn from :data:`OBJHAL_PROMPTS` (the released file mixes 8 variants; these are the world's own),
images referenced in place (``coco/val2014/...``); ground truth is built by the protocol from the world's
COCO annotation files, as on real data.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from bench.errors import DataError
from bench.io import atomic_write_json, read_json, sha256_file, write_jsonl

VERSION = "1"
SEED_OFFSET = 5000
MANIFEST = "synthetic.json"
AMBER_WORD = {"dining table": "table"}
ASSOCIATION = {"dog": ["puppy"], "cat": ["kitten"], "car": ["vehicle"], "bus": ["vehicle"], "chair": ["seat"],
               "couch": ["sofa"], "cup": ["mug"], "bottle": [], "fork": ["utensil"], "table": ["desk"]}
SAFE_WORDS = ("utensil",)
COLOURS = {"dog": "brown", "cat": "orange", "car": "red", "bus": "yellow", "chair": "blue", "couch": "purple",
           "cup": "cyan", "bottle": "green", "fork": "white", "dining table": "tan"}
PARTNERS = {"fork": "dining table", "cup": "bottle", "chair": "couch"}  # the world's planted pairs
GEN_QUERY = "Describe this image."
OBJHAL_PROMPTS = ("Describe this image in detail.", "Please describe this image in detail.",
                  "What objects are in this image? Describe them in detail.",
                  "Provide a detailed description of the image.")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _plural(word: str) -> str:
    return word + ("es" if word.endswith(("s", "sh", "ch")) else "s")


def _manifest_seed(root: Path) -> int:
    manifest = read_json(root / "manifest.json")
    if manifest.get("generator") != "bench.data.synthetic":
        raise DataError(root / "manifest.json", "not a synthetic world (generator is not bench.data.synthetic)")
    return int(manifest.get("seed", 0))


def _scenes(root: Path) -> list[dict]:
    """Evaluation images with their objects and boxes, in image-id order."""
    inst = read_json(root / "coco" / "annotations" / "instances_val2014.json")
    names = {c["id"]: c["name"] for c in inst["categories"]}
    scenes = {im["id"]: {"image_id": im["id"], "file_name": im["file_name"], "objects": [], "boxes": []}
              for im in inst["images"]}
    for ann in sorted(inst["annotations"], key=lambda a: a["id"]):
        s = scenes[ann["image_id"]]
        s["objects"].append(names[ann["category_id"]])
        s["boxes"].append(ann["bbox"])
    return [scenes[k] for k in sorted(scenes)]


def _done(folder: Path) -> bool:
    marker = folder / MANIFEST
    if not marker.exists():
        return False
    try:
        return read_json(marker).get("version") == VERSION
    except DataError:
        return False


def _finish(folder: Path, root: Path, seed: int) -> dict:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST and p.suffix != ".tmp")
    manifest = {"generator": "bench.data.synthetic_amber", "version": VERSION, "seed": seed + SEED_OFFSET,
                "files": {str(p.relative_to(root)): sha256_file(p) for p in files}}
    atomic_write_json(folder / MANIFEST, manifest)
    return manifest


def amber_rows(scenes: list[dict], rng: random.Random) -> tuple[list[dict], list[dict]]:
    """(annotations, queries) in AMBER's formats; ids 1..N, generative rows first."""
    everything = sorted(COLOURS)
    ann, queries = [], []
    for k, s in enumerate(scenes, start=1):
        present = [AMBER_WORD.get(o, o) for o in s["objects"]]
        absent = [o for o in everything if o not in s["objects"]]
        partners = [PARTNERS[o] for o in s["objects"] if o in PARTNERS and PARTNERS[o] not in s["objects"]]
        others = rng.sample([o for o in absent if o not in partners], 2)
        hallu = [AMBER_WORD.get(o, o) for o in partners + others]
        ann.append({"id": k, "type": "generative", "truth": present, "hallu": hallu})
        queries.append({"id": k, "image": f"AMBER_{k}.png", "query": GEN_QUERY})
    rows: list[tuple[int, str, str, str]] = []  # (image k, type, question, truth)
    for k, s in enumerate(scenes, start=1):
        objs = s["objects"]
        absent = [o for o in everything if o not in objs]
        partners = [PARTNERS[o] for o in objs if o in PARTNERS and PARTNERS[o] not in objs]
        shown, missing = rng.choice(objs), (partners[0] if partners else rng.choice(absent))
        rows.append((k, "discriminative-hallucination", f"Is there {_article(shown)} {shown} in this image?", "yes"))
        rows.append((k, "discriminative-hallucination", f"Is there {_article(missing)} {missing} in this image?",
                     "no"))
        obj = rng.choice(objs)
        if rng.random() < 0.5:
            rows.append((k, "discriminative-attribute-number", f"Is there one {obj} in this image?", "yes"))
        else:
            rows.append((k, "discriminative-attribute-number", f"Are there two {_plural(obj)} in this image?", "no"))
        obj = rng.choice(objs)
        colour = COLOURS[obj] if rng.random() < 0.5 else rng.choice([c for o, c in COLOURS.items() if o != obj])
        rows.append((k, "discriminative-attribute-state", f"Is the {obj} {colour}?",
                     "yes" if colour == COLOURS[obj] else "no"))
        rows.append((k, "discriminative-attribute-action", f"Is the {rng.choice(objs)} moving in this image?", "no"))
        (a, box_a), (b, box_b) = rng.sample(list(zip(objs, s["boxes"])), 2)
        if box_a[0] != box_b[0]:
            rows.append((k, "discriminative-relation", f"Is the {a} to the left of the {b}?",
                         "yes" if box_a[0] < box_b[0] else "no"))
        else:
            rows.append((k, "discriminative-relation", f"Is the {a} above the {b}?",
                         "yes" if box_a[1] < box_b[1] else "no"))
    for n, (k, kind, question, truth) in enumerate(rows, start=len(scenes) + 1):
        ann.append({"id": n, "type": kind, "truth": truth})
        queries.append({"id": n, "image": f"AMBER_{k}.png", "query": question})
    return ann, queries


def ensure_amber(root: str | Path) -> Path:
    """Write ``<root>/amber/`` once (deterministic); returns the folder."""
    root = Path(root)
    folder = root / "amber"
    if _done(folder):
        return folder
    seed = _manifest_seed(root)
    scenes = _scenes(root)
    ann, queries = amber_rows(scenes, random.Random(seed + SEED_OFFSET))
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    for k, s in enumerate(scenes, start=1):
        dest = images / f"AMBER_{k}.png"
        part = dest.with_name(dest.name + ".part")
        shutil.copyfile(root / "coco" / "val2014" / s["file_name"], part)
        part.replace(dest)
    atomic_write_json(folder / "relation.json", ASSOCIATION)
    (folder / "safe_words.txt.part").write_text("\n".join(SAFE_WORDS) + "\n", encoding="utf-8")
    (folder / "safe_words.txt.part").replace(folder / "safe_words.txt")
    atomic_write_json(folder / "query_all.json", queries)
    atomic_write_json(folder / "annotations.json", ann)  # last: its presence selects this folder's data
    _finish(folder, root, seed)
    return folder


def ensure_objhal(root: str | Path) -> Path:
    """Write ``<root>/objhal/questions.jsonl`` once (deterministic); returns the folder."""
    root = Path(root)
    folder = root / "objhal"
    if _done(folder):
        return folder
    seed = _manifest_seed(root)
    rng = random.Random(seed + SEED_OFFSET + 1)
    rows = [{"image_id": s["image_id"], "question": rng.choice(OBJHAL_PROMPTS),
             "image": f"coco/val2014/{s['file_name']}"} for s in _scenes(root)]
    write_jsonl(folder / "questions.jsonl", rows)
    _finish(folder, root, seed)
    return folder
