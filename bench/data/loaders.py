"""Loaders: released preference-data formats → :class:`PreferenceRecord`.

Formats recognised per file (first record decides; every record is validated and errors name
file, line and field):

* ``bench`` — our own JSONL of ``PreferenceRecord.to_json()``.
* ``hsa-dpo`` — ``Mr-Loevan/HSA-DPO`` preference JSONL: ``{"id", "question", "chosen", "rejected",
  "chosen_score"?, "rejected_score"?}``; the image is ``<image_root>/{id}.jpg`` (or ``.png``), and a
  ``"<image>\\n"`` prefix of the question is stripped (methods.md §3.3).

Relative image paths are resolved against ``image_root`` (default: the data file's folder).
"""

from __future__ import annotations

from pathlib import Path

from bench.data.preference import PreferenceRecord
from bench.errors import DataError
from bench.io import iter_jsonl


def _strip_image_tag(question: str) -> str:
    return question.replace("<image>", "").lstrip("\n").strip()


def _resolve(image: str, root: Path) -> str:
    p = Path(image)
    return str(p if p.is_absolute() else root / p)


def _hsa_image(rec_id: str, root: Path) -> str:
    for ext in (".jpg", ".png", ".jpeg"):
        cand = root / f"{rec_id}{ext}"
        if cand.exists():
            return str(cand)
    return str(root / f"{rec_id}.jpg")


def load_preference_file(path: str | Path, image_root: str | Path | None = None) -> list[PreferenceRecord]:
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    records: list[PreferenceRecord] = []
    for line, obj in iter_jsonl(path):
        if "image" in obj and "question" in obj:
            obj = dict(obj)
            obj["image"] = _resolve(obj["image"], root)
            obj["question"] = _strip_image_tag(obj["question"])
            records.append(PreferenceRecord.from_json(obj, path=path, line=line))
        elif "question" in obj and "chosen" in obj and "rejected" in obj:  # HSA-DPO released format
            if "id" not in obj:
                raise DataError(path, "missing required field", line=line, field="id")
            rec = PreferenceRecord(
                id=str(obj["id"]), image=_hsa_image(str(obj["id"]), root),
                question=_strip_image_tag(str(obj["question"])), chosen=obj["chosen"], rejected=obj["rejected"],
                chosen_score=obj.get("chosen_score"), rejected_score=obj.get("rejected_score"),
            )
            for key in ("chosen", "rejected"):
                if not isinstance(getattr(rec, key), str):
                    raise DataError(path, "expected a string", line=line, field=key)
            rec.validate(path=path, line=line)
            records.append(rec)
        else:
            raise DataError(path, f"unrecognised preference record (keys {sorted(obj)})", line=line)
    if not records:
        raise DataError(path, "no records")
    return records
