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


# ----------------------------------------------------------------------------------------------- OPA-DPO
OPA_SCORE_WEIGHT = {1: 2.5, 2: 2.0, 3: 1.5, 4: 1.0}  # score_mapping of the seed
OPA_ERROR_WEIGHT = {"image_recognition_error": 3.0, "correct": 1.0, "language_comprehension_error": 1.0}


def split_sentences(text: str) -> list[str]:
    parts = [p.strip() for p in text.replace("\n", " ").split(".")]
    return [p + "." for p in parts if p]


def opa_extra_from_pair(rec: PreferenceRecord) -> dict:
    """OPA fields for a plain pair (bundled synthetic data): gt = revision = chosen, rollout = rejected,
    sentence reports aligned by position (score 2 / image_recognition_error where they differ)."""
    own, rev = split_sentences(rec.rejected), split_sentences(rec.chosen)
    sentences = []
    for i in range(max(len(own), len(rev))):
        o = own[i] if i < len(own) else ""
        r = rev[i] if i < len(rev) else ""
        same = o == r
        sentences.append({"copied": o, "rewritten": r, "score": 4 if same else 2,
                          "error_type": "correct" if same else "image_recognition_error"})
    return {"gt": rec.chosen, "rollout": rec.rejected, "revision": rec.chosen, "sentences": sentences, "added": ""}


def load_opa(path: Path, image_root: Path | None = None) -> list[PreferenceRecord]:
    """OPA-DPO records as JSONL: ``{"id"?, "image", "queries", "standard_response",
    "original_generate_response", "AI_pseudo_response", "AI_json_report"}`` (the fields of
    ``make_opadpo_dataset.py``; images as files instead of base64 bytes). The report's numbered entries
    give per-sentence ``copied_content``/``rewritten_content``/``score``/``error_type``; ``Added`` is
    appended to the revision."""
    import json as _json

    from bench.io import iter_jsonl

    path = Path(path)
    root = Path(image_root) if image_root else path.parent
    out = []
    for line, row in iter_jsonl(path):
        for key in ("image", "queries", "standard_response", "original_generate_response", "AI_json_report"):
            if key not in row:
                raise DataError(path, "missing field", line=line, field=key)
        try:
            report = _json.loads(row["AI_json_report"]) if isinstance(row["AI_json_report"], str) else row["AI_json_report"]
        except _json.JSONDecodeError as exc:
            raise DataError(path, f"AI_json_report is not JSON ({exc.msg})", line=line, field="AI_json_report") from None
        sentences = []
        for key in sorted((k for k in report if k.isdigit()), key=int):
            entry = report[key]
            score = entry.get("score", 4)
            if not isinstance(score, (int, float)) or int(score) not in OPA_SCORE_WEIGHT:
                raise DataError(path, f"sentence {key}: score must be 1-4, got {score!r}", line=line, field="AI_json_report")
            sentences.append({"copied": entry.get("copied_content", ""), "rewritten": entry.get("rewritten_content", ""),
                              "score": int(score), "error_type": entry.get("error_type", "correct")})
        added = (report.get("Added") or {}).get("rewritten_content", "")
        revision = " ".join(s["rewritten"] for s in sentences if s["rewritten"]) + (" " + added if added else "")
        rollout = " ".join(s["copied"] for s in sentences if s["copied"]) or row["original_generate_response"]
        image = str(Path(row["image"]) if Path(row["image"]).is_absolute() else root / row["image"])
        rec = PreferenceRecord(str(row.get("id", line)), image, row["queries"].replace("<image>", "").strip(),
                               chosen=row["standard_response"], rejected=rollout,
                               extra={"gt": row["standard_response"], "rollout": rollout, "revision": revision.strip(),
                                      "sentences": sentences, "added": added})
        rec.validate(path=path, line=line)
        if not rec.extra["revision"]:
            raise DataError(path, "empty revision", line=line, field="AI_pseudo_response")
        out.append(rec)
    return out


# ------------------------------------------------------------------------------------------------- POVID
def load_povid(path: Path, image_root: Path | None = None) -> list[PreferenceRecord]:
    """``YiyangAiLab/POVID_preference_data_for_VLLMs`` (methods.md §2.3): a JSON list of ``{"id", "image",
    "conversations": [human, gpt], "rejected_conversations": [human, gpt]}``; chosen = the gpt turn of
    ``conversations``, rejected = that of ``rejected_conversations``; images under ``image_root``."""
    path = Path(path)
    root = Path(image_root) if image_root else path.parent
    rows = read_json(path)
    if not isinstance(rows, list):
        raise DataError(path, "expected a JSON list of records")
    out = []
    for i, row in enumerate(rows, start=1):
        for key in ("image", "conversations", "rejected_conversations"):
            if key not in row:
                raise DataError(path, "missing field", line=i, field=key)
        try:
            question = row["conversations"][0]["value"]
            chosen = row["conversations"][1]["value"]
            rejected = row["rejected_conversations"][1]["value"]
        except (IndexError, KeyError, TypeError):
            raise DataError(path, "expected [human, gpt] turns with 'value'", line=i, field="conversations") from None
        image = Path(row["image"])
        rec = PreferenceRecord(str(row.get("id", i)), str(image if image.is_absolute() else root / image),
                               question.replace("<image>", "").strip(), chosen, rejected)
        rec.validate(path=path, line=i)
        out.append(rec)
    return out
