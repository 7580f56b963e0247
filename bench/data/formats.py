"""Released preference-data formats of the seed methods → :class:`PreferenceRecord`.

HA-DPO (``juliozhao/hadpo-data``, methods.md §1.3): ``desc_data.json`` = ``{image_id: {"chosen": [str],
"rejected": [str]}}`` (a list of ``{"image_id", "chosen", "rejected"}`` is accepted too) and
``pope_data.json`` = ``[{"image_id", "question", "chosen", "reject", "answer", "correct"}]`` of which only
``correct == False`` rows are used. Images are Visual Genome ``<image_root>/<image_id>.jpg`` (or the
``image_data.json`` mapping when present). Assembly as ``desc_process`` / ``pope_process``: per image one
chosen and one rejected at random (seed 42) and one of four describe-prompts; list = POPE pairs +
description pairs twice.
"""

from __future__ import annotations

import random
from pathlib import Path

from bench.data.preference import PreferenceRecord
from bench.errors import DataError
from bench.io import read_json

HADPO_PROMPTS = (
    "Describe this image in detail.",
    "Provide a detailed description of the image.",
    "Give an elaborate explanation of the image you see.",
    "Share a comprehensive rundown of the presented image.",
)


def _vg_image(root: Path, image_id) -> str:
    for ext in (".jpg", ".png"):
        cand = root / f"{image_id}{ext}"
        if cand.exists():
            return str(cand)
    return str(root / f"{image_id}.jpg")


def load_hadpo(desc_path: Path, pope_path: Path, image_root: Path, seed: int = 42) -> list[PreferenceRecord]:
    rng = random.Random(seed)
    desc = read_json(desc_path)
    if isinstance(desc, list):
        desc = {str(d.get("image_id")): d for d in desc}
    if not isinstance(desc, dict):
        raise DataError(desc_path, "expected an object keyed by image id (or a list of records)")
    desc_records = []
    for image_id, entry in desc.items():
        for key in ("chosen", "rejected"):
            if not isinstance(entry.get(key), list) or not entry[key]:
                raise DataError(desc_path, f"image {image_id}: expected a non-empty list", field=key)
        rec = PreferenceRecord(f"desc-{image_id}", _vg_image(image_root, image_id), rng.choice(HADPO_PROMPTS),
                               rng.choice(entry["chosen"]), rng.choice(entry["rejected"]))
        rec.validate(path=desc_path)
        desc_records.append(rec)
    pope_records = []
    if Path(pope_path).exists():
        rows = read_json(pope_path)
        if not isinstance(rows, list):
            raise DataError(pope_path, "expected a list of records")
        for i, row in enumerate(rows):
            for key in ("image_id", "question", "chosen", "reject", "correct"):
                if key not in row:
                    raise DataError(pope_path, "missing field", line=i + 1, field=key)
            if row["correct"] is not False:
                continue
            rec = PreferenceRecord(f"pope-{row['image_id']}-{i}", _vg_image(image_root, row["image_id"]),
                                   row["question"], row["chosen"], row["reject"])
            rec.validate(path=pope_path, line=i + 1)
            pope_records.append(rec)
    # the seed's training list: POPE pairs + description pairs twice (second copy gets distinct ids)
    second = [PreferenceRecord(r.id + "#2", r.image, r.question, r.chosen, r.rejected) for r in desc_records]
    return pope_records + desc_records + second
