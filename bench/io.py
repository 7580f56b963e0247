"""File formats on disk: atomic JSON writes, append-only JSONL, sha256 of files.

Every JSON file is written to a temporary file in the same directory and renamed into
place, so a reader never sees a half-written file. JSONL files are append-only with one
complete record per line; a torn last line (a killed writer) is detected and dropped by
:func:`read_jsonl` with ``repair=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from bench.errors import DataError


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON ({exc.msg} at column {exc.colno})", line=exc.lineno) from None


def iter_jsonl(path: str | os.PathLike, repair: bool = False) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record). A malformed line raises :class:`DataError` naming file and line.

    With ``repair=True`` a malformed *last* line without a trailing newline (a torn append from a
    killed writer) is skipped instead of raising.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    with path.open("r", encoding="utf-8") as fh:
        lines = fh.readlines()
    for i, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as exc:
            if repair and i == len(lines) and not raw.endswith("\n"):
                return
            raise DataError(path, f"malformed JSON line ({exc.msg})", line=i) from None
        if not isinstance(rec, dict):
            raise DataError(path, f"expected a JSON object, got {type(rec).__name__}", line=i)
        yield i, rec


def read_jsonl(path: str | os.PathLike, repair: bool = False) -> list[dict]:
    return [rec for _, rec in iter_jsonl(path, repair=repair)]


def truncate_torn_tail(path: str | os.PathLike) -> None:
    """Cut a JSONL file back to its last complete line (after a killed writer)."""
    path = Path(path)
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with path.open("r+b") as fh:
            fh.truncate(cut)


def append_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Append complete lines and fsync; each line is written in one call."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
