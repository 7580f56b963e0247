"""File formats on disk: atomic JSON writes, append-only JSONL, sha256 of files.

Every JSON file is written to a temporary file in the same directory and renamed into
place, so a reader never sees a half-written file; the result gets the permissions an ordinary
``open(path, "w")`` would (0666 minus the user's umask), so shared results folders stay readable. JSONL files are append-only with one
complete record per line; a torn last line (a killed writer) is detected and dropped by
:func:`read_jsonl` with ``repair=True``. :func:`iter_json_array` streams the elements of a top-level JSON
array too large to load whole (Visual Genome's files).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from bench.errors import BenchError, DataError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync, rename into place (mode 0666 & ~umask)."""
    path = Path(path)
    if path.parent.exists() and not path.parent.is_dir():
        raise DataError(path.parent, "is a file, expected a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    if path.is_dir():
        raise DataError(path, "is a folder, expected a JSON file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text (byte {exc.start}: {exc.reason})") from None
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
    if path.is_dir():
        raise DataError(path, "is a folder, expected a JSONL file")
    raw_lines = path.read_bytes().split(b"\n")
    lines = []
    for i, blob in enumerate(raw_lines, start=1):
        if i == len(raw_lines) and not blob:
            break
        try:
            lines.append(blob.decode("utf-8") + ("\n" if i < len(raw_lines) else ""))
        except UnicodeDecodeError as exc:
            raise DataError(path, f"not UTF-8 text (byte {exc.start} of the line: {exc.reason})", line=i) from None
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


def confined_path(root: str | os.PathLike, relative: str, what: str = "path") -> Path:
    """``root / relative``, refusing a ``relative`` taken from data that is absolute or leaves ``root``
    (``..``, symlinks resolved), so no record can make ``bench`` write outside its folder."""
    rel = str(relative)
    if not rel or os.path.isabs(rel) or rel.startswith(("\\", "/")) or (len(rel) > 1 and rel[1] == ":"):
        raise BenchError(f"{what} {relative!r}: must be a relative path inside {root}")
    base = Path(root).resolve()
    target = (base / rel).resolve()
    if target != base and base not in target.parents:
        raise BenchError(f"{what} {relative!r}: leaves the folder {root}")
    return base / rel


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def iter_json_array(path: str | Path, chunk: int = 1 << 20) -> Iterator[Any]:
    """Stream the elements of a top-level JSON array (VG's multi-GB files) without loading it whole."""
    dec = json.JSONDecoder()
    with open(path, "r", encoding="utf-8") as fh:
        buf = fh.read(chunk)
        pos = 0
        while pos < len(buf) and buf[pos].isspace():
            pos += 1
        if not buf[pos:pos + 1] == "[":
            raise BenchError(f"{path}: not a JSON array")
        pos += 1
        eof = False
        while True:
            while True:  # skip separators
                while pos < len(buf) and buf[pos] in " \t\r\n,":
                    pos += 1
                if pos < len(buf) or eof:
                    break
                more = fh.read(chunk)
                eof = not more
                buf, pos = buf[pos:] + more, 0
            if pos < len(buf) and buf[pos] == "]":
                return
            if pos >= len(buf) and eof:
                raise BenchError(f"{path}: truncated JSON array")
            try:
                obj, end = dec.raw_decode(buf, pos)
            except json.JSONDecodeError:
                if eof:
                    raise BenchError(f"{path}: malformed JSON array element") from None
                more = fh.read(chunk)
                eof = not more
                buf, pos = buf[pos:] + more, 0
                continue
            cut_number = (isinstance(obj, (int, float)) and not isinstance(obj, bool) and end < len(buf)
                          and buf[end] not in " \t\r\n,]")
            if not eof and (not buf[end:].strip() or cut_number):  # the element may continue in the next chunk
                more = fh.read(chunk)
                eof = not more
                buf, pos = buf[pos:] + more, 0
                continue
            yield obj
            pos = end
            if pos > chunk:
                buf, pos = buf[pos:], 0
