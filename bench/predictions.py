"""The predictions file format (``predictions/<benchmark>.jsonl``) and its one reading rule.

Each line is ``{"id": str, "text": str, "key": str}``; ``key`` identifies what produced the text (the
checkpoint fingerprint, the protocol, the item including its image bytes, the decoding settings; see
``bench/eval/engine.py: prediction_key``). The file is append-only while a run is in progress and is
rewritten in item order at the end. It only grows: predictions for items outside the current
``--limit`` are kept (a limit selects what is *scored*, not what is stored).

**One rule for duplicate lines, everywhere** (``bench eval``, ``bench score``, the leaderboard): the
*last* line of an id wins — the file is append-only, so the last line is the newest. Lines whose key
does not match the current checkpoint are never used; the engine moves them to
``<benchmark>.jsonl.stale`` (nothing computed is deleted).
"""

from __future__ import annotations

from pathlib import Path

from bench.errors import DataError
from bench.io import iter_jsonl


def read_predictions(path: str | Path, keys: dict[str, str] | None = None) -> tuple[dict[str, dict], list[dict]]:
    """(id → newest valid line, lines not kept).

    A line without a string ``id`` and ``text`` is a :class:`DataError` naming file, line and field.
    With ``keys`` (id → expected key), a line whose id is not in ``keys`` or whose key differs is not
    kept; without ``keys`` every well-formed line is kept (re-scoring a stored file).
    """
    kept: dict[str, dict] = {}
    rejected: list[dict] = []
    for line, rec in iter_jsonl(path, repair=True):
        for name in ("id", "text"):
            if name not in rec:
                raise DataError(path, f"prediction line has no {name!r}", line=line, field=name)
            if not isinstance(rec[name], str):
                raise DataError(path, f"{name!r} must be a string, got {type(rec[name]).__name__}", line=line,
                                field=name)
        iid = rec["id"]
        if keys is not None and (iid not in keys or rec.get("key") != keys[iid]):
            rejected.append(rec)
            continue
        kept.pop(iid, None)  # the last line wins; re-insert so order follows the newest line
        kept[iid] = rec
    return kept, rejected
