"""Synthetic MMHal-Bench-style and LLaVA-Bench-style questions for the glyph world (offline judge protocols).

Derived only from the synthetic world's evaluation annotations (``coco/annotations/instances_val2014.json``:
each image's objects in cell order with their boxes), with its own random stream
(``random.Random(seed + 5000)``), so adding them changes no other file of the world. Written in the real
benchmarks' layouts so the same loaders read them (``metrics/mmhal.py``, ``metrics/llava_bench.py``):

* ``mmhal/response_template.json`` — 96 questions on 96 distinct evaluation images, question type =
  index mod 8 in MMHal's order (attribute: a glyph's colour; adversarial: the colour of an absent object,
  the anchor's bias partner when it is absent; comparison: which of two objects is further left / higher;
  counting: how many objects; relation: where one object is relative to the other; environment: the
  background; holistic: a detailed description; other: which objects are visible). ``image_content`` =
  the present objects' names (capitalised, as MMHal's OpenImages labels), ``gt_answer`` = the true
  answer built from the annotations, ``image_src`` = the PNG's file name, copied to ``mmhal/images/``.
* ``llava-bench/{questions,context,answers_gpt4}.jsonl`` + ``images/`` — 24 images, 60 questions in the
  real benchmark's category mix (18 conv, 16 detail, 26 complex), grouped by image; context = a caption
  plus the objects' relative position; reference answers = true answers built from the annotations (the
  role text-only GPT-4's answers play in the real benchmark).

Colours are the glyph colours of :data:`bench.data.synthetic_scene.CATEGORIES` named in words (:data:`COLOUR`).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from bench.data.synthetic_scene import BIAS_PAIRS, CATEGORIES, article, caption
from bench.io import atomic_write_json, read_json, sha256_file, write_jsonl

MMHAL_TYPES = ("attribute", "adversarial", "comparison", "counting", "relation", "environment", "holistic", "other")
COLOUR = {"dog": "brown", "cat": "orange", "car": "red", "bus": "yellow", "chair": "blue", "couch": "purple",
          "cup": "cyan", "bottle": "green", "fork": "white", "dining table": "tan"}
NUMBER = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
N_MMHAL, N_LLAVA_IMAGES = 96, 24
LLAVA_MIX = {"conv": 18, "detail": 16, "complex": 26}
SEED_OFFSET = 5000


def _scenes(root: Path) -> list[dict]:
    """``[{"image_id", "file_name", "objects": [...], "boxes": [[x, y, w, h], ...]}]`` from the val annotations."""
    inst = read_json(root / "coco" / "annotations" / "instances_val2014.json")
    names = {c["id"]: c["name"] for c in inst["categories"]}
    scenes = {im["id"]: {"image_id": im["id"], "file_name": im["file_name"], "objects": [], "boxes": []}
              for im in inst["images"]}
    for a in inst["annotations"]:
        scenes[a["image_id"]]["objects"].append(names[a["category_id"]])
        scenes[a["image_id"]]["boxes"].append(a["bbox"])
    return [scenes[im["id"]] for im in inst["images"]]


def _listing(objs: list[str]) -> str:
    parts = [f"{article(o)} {o}" for o in objs]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _where(scene: dict, a: str, b: str) -> str:
    """Where ``a`` is relative to ``b``: left of / right of / above / below (cell centres)."""
    ba, bb = (scene["boxes"][scene["objects"].index(o)] for o in (a, b))
    (ax, ay), (bx, by) = ((x + w / 2, y + h / 2) for x, y, w, h in (ba, bb))
    if abs(ax - bx) >= abs(ay - by):
        return "to the left of" if ax < bx else "to the right of"
    return "above" if ay < by else "below"


def _absent(scene: dict, rng: random.Random) -> str:
    partners = [BIAS_PAIRS[o] for o in scene["objects"] if o in BIAS_PAIRS and BIAS_PAIRS[o] not in scene["objects"]]
    if partners:
        return partners[0]
    return rng.choice([n for _, n, _, _ in CATEGORIES if n not in scene["objects"]])


def mmhal_question(scene: dict, qtype: str, rng: random.Random) -> tuple[str, str]:
    """(question, standard answer) of one MMHal-style question type on one scene."""
    objs = scene["objects"]
    a = rng.choice(objs)
    b = rng.choice([o for o in objs if o != a]) if len(objs) > 1 else a
    if qtype == "attribute":
        return f"What color is the {a} in the image?", f"The {a} is {COLOUR[a]}."
    if qtype == "adversarial":
        x = _absent(scene, rng)
        return f"What color is the {x} in the image?", f"There is no {x} in the image."
    if qtype == "comparison":
        rel = _where(scene, a, b)
        if rel in ("to the left of", "to the right of"):
            left, right = (a, b) if rel == "to the left of" else (b, a)
            return (f"Which is further to the left, the {a} or the {b}?",
                    f"The {left} is further to the left than the {right}.")
        top, bottom = (a, b) if rel == "above" else (b, a)
        return f"Which is higher in the image, the {a} or the {b}?", f"The {top} is above the {bottom}."
    if qtype == "counting":
        return ("How many objects are there in the image?",
                f"There are {NUMBER.get(len(objs), str(len(objs)))} objects in the image: {_listing(objs)}.")
    if qtype == "relation":
        return f"What is next to the {a}?", f"The {b} is {_where(scene, b, a)} the {a}."
    if qtype == "environment":
        return "What is the background of this image?", "The objects are drawn on a plain dark background."
    if qtype == "holistic":
        return "Describe this image in detail.", caption(objs)
    return "What objects can you see in this image?", f"I can see {_listing(objs)}."


def _mmhal(root: Path, scenes: list[dict], rng: random.Random) -> list[Path]:
    chosen = rng.sample(scenes, min(N_MMHAL, len(scenes)))
    rows = []
    (root / "mmhal" / "images").mkdir(parents=True, exist_ok=True)
    for i, scene in enumerate(chosen):
        qtype = MMHAL_TYPES[i % len(MMHAL_TYPES)]
        question, gt = mmhal_question(scene, qtype, rng)
        rows.append({"question_type": qtype, "question_topic": "synthetic", "image_id": str(scene["image_id"]),
                     "image_src": scene["file_name"], "image_content": [o.capitalize() for o in scene["objects"]],
                     "question": question, "gt_answer": gt, "model_answer": ""})
        shutil.copyfile(root / "coco" / "val2014" / scene["file_name"], root / "mmhal" / "images" / scene["file_name"])
    atomic_write_json(root / "mmhal" / "response_template.json", rows)
    return [root / "mmhal" / "response_template.json"]


def llava_questions(scene: dict, categories: list[str], rng: random.Random) -> list[tuple[str, str, str]]:
    """``[(category, question, reference answer)]`` for one scene."""
    objs = scene["objects"]
    anchor = next((o for o in objs if o in BIAS_PAIRS), objs[0])
    partner = BIAS_PAIRS.get(anchor)
    others = [o for o in objs if o != anchor]
    out, n_complex = [], 0
    for cat in categories:
        if cat == "conv":
            if rng.random() < 0.5:
                o = rng.choice(objs)
                out.append((cat, f"What color is the {o}?", f"The {o} is {COLOUR[o]}."))
            else:
                x = _absent(scene, rng)
                out.append((cat, f"Is there {article(x)} {x} in the image?",
                            f"No, there is no {x} in the image; it shows {_listing(objs)}."))
        elif cat == "detail":
            text = caption(objs)
            if others:
                text += f" The {others[0]} is {_where(scene, others[0], anchor)} the {anchor}."
            out.append((cat, "Describe this image in detail.", text))
        else:
            if n_complex == 0:
                with_ = f"the {others[0]}" if others else "nothing else"
                out.append((cat, f"Which other object in the image goes with the {anchor}, and why?",
                            f"Only {with_} is in the image besides the {anchor}, so the {anchor} goes with {with_}."))
            else:
                if partner and partner not in objs:
                    ans = f"The {anchor} usually comes with {article(partner)} {partner}, but there is no {partner} here."
                elif partner:
                    ans = f"Nothing is unusual: the {anchor} appears with {article(partner)} {partner}, as it usually does."
                else:
                    ans = f"Nothing is unusual: the image shows {_listing(objs)}."
                out.append((cat, "What is unusual about this scene?", ans))
            n_complex += 1
    return out


def _llava(root: Path, scenes: list[dict], rng: random.Random) -> list[Path]:
    chosen = rng.sample(scenes, min(N_LLAVA_IMAGES, len(scenes)))
    n = len(chosen)
    per_image: list[list[str]] = [[] for _ in range(n)]
    for k in range(LLAVA_MIX["conv"]):
        per_image[k % n].append("conv")
    for k in range(LLAVA_MIX["detail"]):
        per_image[k % n].append("detail")
    for k in range(LLAVA_MIX["complex"]):
        per_image[k % n].append("complex")
    folder = root / "llava-bench"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    questions, context, answers, qid = [], [], [], 0
    for k, (scene, cats) in enumerate(zip(chosen, per_image)):
        objs = scene["objects"]
        cap = caption(objs)
        if len(objs) > 1:
            cap += f"\nThe {objs[0]} is {_where(scene, objs[0], objs[1])} the {objs[1]}."
        context.append({"id": str(scene["image_id"]), "image": scene["file_name"], "caption": cap})
        for cat, question, answer in llava_questions(scene, cats, rng):
            questions.append({"question_id": qid, "image": scene["file_name"], "text": question, "category": cat})
            answers.append({"question_id": qid, "prompt": question, "text": answer, "answer_id": f"synthetic-{qid}",
                            "model_id": "synthetic-annotations", "metadata": {}})
            qid += 1
        shutil.copyfile(root / "coco" / "val2014" / scene["file_name"], folder / "images" / scene["file_name"])
    write_jsonl(folder / "questions.jsonl", questions)
    write_jsonl(folder / "context.jsonl", context)
    write_jsonl(folder / "answers_gpt4.jsonl", answers)
    return [folder / n for n in ("questions.jsonl", "context.jsonl", "answers_gpt4.jsonl")]


def write_judged(root: str | Path, seed: int = 0) -> list[Path]:
    """Write the MMHal- and LLaVA-Bench-style files under a synthetic world ``root``; returns the files."""
    root = Path(root)
    scenes = _scenes(root)
    rng = random.Random(seed + SEED_OFFSET)
    return _mmhal(root, scenes, rng) + _llava(root, scenes, rng)


def ensure_judged(root: str | Path) -> bool:
    """Add the files to a synthetic world prepared before they existed (its manifest names the generator);
    records them in the manifest. True when something was written."""
    root = Path(root)
    manifest_path = root / "manifest.json"
    if not manifest_path.exists():
        return False
    manifest = read_json(manifest_path)
    if manifest.get("generator") != "bench.data.synthetic":
        return False
    wanted = [root / "mmhal" / "response_template.json", root / "llava-bench" / "questions.jsonl"]
    if all(p.exists() for p in wanted):
        return False
    files = write_judged(root, int(manifest.get("seed", 0)))
    for p in files:
        manifest.setdefault("files", {})[p.relative_to(root).as_posix()] = sha256_file(p)
    atomic_write_json(manifest_path, manifest)
    return True
