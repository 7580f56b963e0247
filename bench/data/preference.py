"""The training loop's input record: one preference sample, method-agnostic.

Every loader of a released dataset format (HA-DPO, POVID, HSA-DPO, OPA-DPO) turns its rows into
:class:`PreferenceRecord` lines; the loop only sees these. Method-specific fields (OPA-DPO's
ground-truth answer, rollout, revision, sentence scores and error types) live in ``extra``
under documented keys, never as new attributes.

On disk: JSONL, one ``PreferenceRecord.to_json()`` object per line.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import DataError


@dataclass
class PreferenceRecord:
    id: str
    image: str  # path to the image file
    question: str  # user turn without the <image> placeholder or template
    chosen: str
    rejected: str
    chosen_score: float | None = None
    rejected_score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict, *, path: str | Path = "<records>", line: int | None = None) -> "PreferenceRecord":
        for key in ("id", "image", "question", "chosen", "rejected"):
            if key not in obj:
                raise DataError(path, "missing required field", line=line, field=key)
            if key != "id" and not isinstance(obj[key], str):
                raise DataError(path, f"expected a string, got {type(obj[key]).__name__}", line=line, field=key)
        if obj.get("extra") is not None and not isinstance(obj["extra"], dict):
            raise DataError(path, f"expected an object, got {type(obj['extra']).__name__}", line=line, field="extra")
        rec = cls(
            id=str(obj["id"]), image=obj["image"], question=obj["question"], chosen=obj["chosen"],
            rejected=obj["rejected"], chosen_score=obj.get("chosen_score"), rejected_score=obj.get("rejected_score"),
            extra=dict(obj.get("extra") or {}),
        )
        rec.validate(path=path, line=line)
        return rec

    def validate(self, *, path: str | Path = "<records>", line: int | None = None) -> None:
        """Empty responses and non-numeric / non-finite scores are errors naming file, line and field."""
        for key in ("chosen", "rejected"):
            if not getattr(self, key).strip():
                raise DataError(path, "empty response", line=line, field=key)
        for key in ("chosen_score", "rejected_score"):
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise DataError(path, f"score must be a finite number, got {value!r}", line=line, field=key)
