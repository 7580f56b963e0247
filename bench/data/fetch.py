"""``python -m bench data fetch NAME``: download the real benchmark and training data into the data root.

Every source is a row of the declarative table :data:`SOURCES` (``python -m bench data fetch list``
prints it): files with their URL(s) or Hugging Face repo + path + revision, the path under the data
root they land at, and the sha256 when one is published or pinned (the POPE and CHAIR files' digests
are those of the byte-for-byte copies in ``shared/reference``; POVID's is the hub's LFS object id).
Derived steps (unzip members, per-image downloads, format conversions) follow the downloads.

Guarantees:

* HTTP downloads go to ``<target>.part`` with ``Range`` resume (a cut connection or a killed run
  continues where it stopped; a server that ignores ``Range`` restarts the file), are checked against
  the published sha256 (a mismatch deletes the download and fails), and are renamed into place
  atomically — never a partial file at the final path. Hugging Face files come through
  ``huggingface_hub.hf_hub_download`` into a staging folder under the root and are moved into place the
  same way.
* Every file written is recorded as ``{relpath: sha256}`` in ``<root>/manifest.json`` (on first fetch
  when no digest is published); ``bench data verify`` re-checks them all. A file already present with
  its recorded digest is not downloaded again, so a rerun is cheap and works offline.
* Offline (``HF_HUB_OFFLINE=1`` or ``BENCH_OFFLINE=1``, or no route to the host): one line per missing
  file naming the exact fetch command, then a one-line error (exit 2), no traceback.

``opa-dpo-data`` cannot be fetched: the authors publish it only in a Google Drive folder (methods.md
§4.3); the entry prints where to get it and converts a local copy with ``--from``.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import socket
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from bench.errors import BenchError, DataError, OfflineError
from bench.io import atomic_write_json, confined_path, read_json, sha256_file, write_jsonl

USER_AGENT = "bench-data-fetch/1 (+python urllib)"
CHUNK = 1 << 16


class FetchError(BenchError):
    """A download failed for a reason other than being offline (HTTP 404, sha256 mismatch, …)."""


class NetworkUnavailable(Exception):
    """No route to the host (DNS failure, refused, unreachable) or offline mode: the file is *missing*."""


# ------------------------------------------------------------------------------------------ the table
@dataclass(frozen=True)
class UrlFile:
    target: str  # path under the data root
    urls: tuple[str, ...]  # mirrors, tried in order
    sha256: str | None = None  # published / pinned digest (None: recorded on first fetch)
    size: int | None = None


@dataclass(frozen=True)
class HubFile:
    repo: str
    path: str
    target: str
    revision: str = "main"
    sha256: str | None = None
    repo_type: str = "dataset"


@dataclass(frozen=True)
class HubFolder:
    repo: str
    patterns: tuple[str, ...]
    target_dir: str  # the repo paths are kept below it
    revision: str = "main"
    repo_type: str = "dataset"


@dataclass
class Source:
    name: str
    description: str
    files: list = field(default_factory=list)
    requires: list[str] = field(default_factory=list)
    post: list[Callable[["FetchContext"], None]] = field(default_factory=list)
    manual: str | None = None  # instructions when the data cannot be fetched automatically
    licence: str = ""
    pinned: str = ""  # what the entry is pinned to, and what of it could be checked offline


# ------------------------------------------------------------------------------------------ manifest
class Manifest:
    """``<root>/manifest.json``: ``{"files": {relpath: sha256}, "sources": {name: {...}}, ...}``; other
    keys (the synthetic world's) are kept. Saved atomically after every change."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.path = self.root / "manifest.json"
        self.data: dict[str, Any] = read_json(self.path) if self.path.exists() else {}
        self.data.setdefault("files", {})
        self.data.setdefault("sources", {})

    def expected(self, rel: str) -> str | None:
        return self.data["files"].get(rel)

    def record(self, rel: str, digest: str, save: bool = True) -> None:
        self.data["files"][rel] = digest
        if save:
            self.save()

    def source(self, name: str, info: dict) -> None:
        self.data["sources"][name] = {**self.data["sources"].get(name, {}), **info}
        self.save()

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, self.data)


# ------------------------------------------------------------------------------------------ context
def offline_mode() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "BENCH_OFFLINE"))


@dataclass
class FetchContext:
    root: Path
    name: str
    manifest: Manifest
    offline: bool = False
    progress: bool = True
    retries: int = 5
    timeout: float = 60.0
    workers: int = 8
    options: dict[str, Any] = field(default_factory=dict)
    command_name: str = ""  # the source the user asked for (a dependency's messages name it)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (relpath, why)
    fetched: int = 0
    present: int = 0
    hub_unreachable: str = ""  # set after the first failed Hub request: the rest are listed, not retried

    def command(self) -> str:
        return f"python -m bench data fetch {self.command_name or self.name} --root {self.root}"

    def note_missing(self, rel: str, why: str) -> None:
        self.missing.append((rel, why))
        print(f"missing: {rel} ({why}) — run `{self.command()}` on a machine with network access", file=sys.stderr)

    def log(self, msg: str) -> None:
        if self.progress:
            print(msg, file=sys.stderr)


# ------------------------------------------------------------------------------------------ HTTP
_NO_ROUTE = (socket.gaierror, ConnectionRefusedError, ConnectionResetError)


def _is_no_route(exc: BaseException) -> bool:
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, _NO_ROUTE):
        return True
    if isinstance(reason, OSError) and reason.errno in (101, 113, 111, -2, -3):  # unreachable, refused, DNS
        return True
    return False


def download_url(url: str, dest: Path, sha256: str | None = None, size: int | None = None, retries: int = 5,
                 timeout: float = 60.0, progress: bool = False) -> str:
    """Download ``url`` to ``dest`` through ``dest.part`` with Range resume; returns the sha256.

    Raises :class:`NetworkUnavailable` when the host cannot be reached before any byte arrived and
    :class:`FetchError` for HTTP errors, a digest or size mismatch (the download is deleted), or when
    the retries are used up (the ``.part`` is kept; a rerun resumes it).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last = ""
    for attempt in range(retries + 1):
        have = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
        req = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status = resp.status
                length = resp.headers.get("Content-Length")
                if have and status == 206:
                    m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
                    if not m or int(m.group(1)) != have:  # not the range we asked for: start over
                        have, mode = 0, "wb"
                        resp.close()
                        part.unlink(missing_ok=True)
                        continue
                    mode = "ab"
                else:  # 200: a fresh download (or a server that ignores Range)
                    have, mode = 0, "wb"
                expected_total = have + int(length) if length is not None and length.isdigit() else None
                with open(part, mode) as fh:
                    while True:
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        fh.write(block)
                    fh.flush()
                    os.fsync(fh.fileno())
            got = part.stat().st_size
            if expected_total is not None and got < expected_total:
                last = f"connection closed after {got} of {expected_total} bytes"
                continue  # resume with Range
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # nothing left to send: the .part is complete (verified below)
                break
            last = f"HTTP {exc.code}"
            if exc.code in (429,) or exc.code >= 500:
                continue
            raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            if _is_no_route(exc) and not part.exists() and attempt == 0:
                raise NetworkUnavailable(f"cannot reach {urllib.parse.urlparse(url).netloc}"
                                         f" ({type(getattr(exc, 'reason', exc)).__name__})") from None
            last = f"{type(getattr(exc, 'reason', exc)).__name__}: {getattr(exc, 'reason', exc)}"
            continue
    else:
        raise FetchError(f"{url}: gave up after {retries + 1} attempts ({last}); the partial download is kept in"
                         f" {part.name} and a rerun resumes it")
    digest = sha256_file(part)
    if sha256 and digest != sha256:
        part.unlink(missing_ok=True)
        raise FetchError(f"{dest.name}: sha256 mismatch (expected {sha256[:16]}…, got {digest[:16]}…); the download"
                         " was discarded")
    if size is not None and part.stat().st_size != size:
        n = part.stat().st_size
        part.unlink(missing_ok=True)
        raise FetchError(f"{dest.name}: size mismatch (expected {size} bytes, got {n}); the download was discarded")
    os.replace(part, dest)
    return digest


def _up_to_date(ctx: FetchContext, rel: str, published: str | None) -> bool:
    path = ctx.root / rel
    if not path.exists():
        return False
    want = published or ctx.manifest.expected(rel)
    digest = sha256_file(path)
    if want is None:  # present but never recorded: adopt it
        ctx.manifest.record(rel, digest, save=False)
        return True
    if digest == want:
        if ctx.manifest.expected(rel) != digest:
            ctx.manifest.record(rel, digest, save=False)
        return True
    ctx.log(f"{rel}: sha256 differs from the {'published' if published else 'recorded'} digest; fetching again")
    return False


def fetch_url_file(ctx: FetchContext, f: UrlFile) -> None:
    if _up_to_date(ctx, f.target, f.sha256):
        ctx.present += 1
        return
    if ctx.offline:
        ctx.note_missing(f.target, "offline mode")
        return
    errors = []
    for url in f.urls:
        try:
            ctx.log(f"fetch {url} -> {f.target}")
            digest = download_url(url, ctx.root / f.target, f.sha256, f.size, ctx.retries, ctx.timeout)
        except NetworkUnavailable as exc:
            errors.append(("offline", str(exc)))
            continue
        except FetchError as exc:
            errors.append(("error", str(exc)))
            continue
        ctx.manifest.record(f.target, digest)
        ctx.fetched += 1
        return
    if all(kind == "offline" for kind, _ in errors):
        ctx.note_missing(f.target, errors[-1][1] if errors else "no URL")
        return
    raise FetchError("; ".join(msg for _, msg in errors))


# ------------------------------------------------------------------------------------------ Hugging Face
def _place(ctx: FetchContext, src: Path, rel: str, sha256: str | None) -> None:
    """Move a staged file to ``root/rel`` (digest checked, atomic), record it."""
    dest = ctx.root / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = sha256_file(src)
    if sha256 and digest != sha256:
        src.unlink(missing_ok=True)
        raise FetchError(f"{rel}: sha256 mismatch (expected {sha256[:16]}…, got {digest[:16]}…); discarded")
    part = dest.with_name(dest.name + ".part")
    shutil.move(str(src), part)
    os.replace(part, dest)
    ctx.manifest.record(rel, digest, save=False)
    ctx.fetched += 1


def _hub_errors() -> tuple[type, ...]:
    from huggingface_hub import errors as hf_errors

    return tuple(getattr(hf_errors, n) for n in ("LocalEntryNotFoundError", "OfflineModeIsEnabled")
                 if hasattr(hf_errors, n))


def _hub_commit(repo: str, revision: str, repo_type: str) -> str | None:
    if re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    try:
        from huggingface_hub import HfApi

        info = HfApi().repo_info(repo, repo_type=repo_type, revision=revision)
        return getattr(info, "sha", None)
    except Exception:  # the commit is informative only
        return None


def fetch_hub_file(ctx: FetchContext, f: HubFile) -> None:
    if _up_to_date(ctx, f.target, f.sha256):
        ctx.present += 1
        return
    if ctx.offline:
        ctx.note_missing(f.target, "offline mode (HF_HUB_OFFLINE/BENCH_OFFLINE)")
        return
    if ctx.hub_unreachable:
        ctx.note_missing(f.target, ctx.hub_unreachable)
        return
    import huggingface_hub

    staging = ctx.root / ".staging" / f.repo.replace("/", "--")
    ctx.log(f"fetch hf://{f.repo_type}s/{f.repo}@{f.revision}/{f.path} -> {f.target}")
    try:
        got = huggingface_hub.hf_hub_download(repo_id=f.repo, filename=f.path, repo_type=f.repo_type,
                                              revision=f.revision, local_dir=str(staging))
    except _hub_errors() as exc:
        ctx.hub_unreachable = f"Hugging Face Hub unreachable ({type(exc).__name__})"
        ctx.note_missing(f.target, ctx.hub_unreachable)
        return
    except Exception as exc:
        if _is_no_route(exc) or "connect" in type(exc).__name__.lower() or isinstance(exc, (OSError, TimeoutError)):
            ctx.hub_unreachable = f"Hugging Face Hub unreachable ({type(exc).__name__})"
            ctx.note_missing(f.target, ctx.hub_unreachable)
            return
        raise FetchError(f"hf://{f.repo}@{f.revision}/{f.path}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    _place(ctx, Path(got), f.target, f.sha256)
    ctx.manifest.save()
    commit = _hub_commit(f.repo, f.revision, f.repo_type)
    ctx.manifest.source(ctx.name, {"hub": {f.repo: {"revision": f.revision, "commit": commit}}})


def fetch_hub_folder(ctx: FetchContext, f: HubFolder) -> None:
    marker = f"{f.target_dir}/.complete-{f.revision[:12]}"
    if (ctx.root / marker).exists():
        listed = json.loads((ctx.root / marker).read_text())
        if all((ctx.root / rel).exists() for rel in listed):
            ctx.present += len(listed)
            return
    if ctx.offline or ctx.hub_unreachable:
        ctx.note_missing(f"{f.target_dir}/ ({', '.join(f.patterns)})",
                         ctx.hub_unreachable or "offline mode (HF_HUB_OFFLINE/BENCH_OFFLINE)")
        return
    import huggingface_hub

    staging = ctx.root / ".staging" / f.repo.replace("/", "--")
    ctx.log(f"fetch hf://{f.repo_type}s/{f.repo}@{f.revision} {list(f.patterns)} -> {f.target_dir}/")
    try:
        local = huggingface_hub.snapshot_download(repo_id=f.repo, repo_type=f.repo_type, revision=f.revision,
                                                  allow_patterns=list(f.patterns), local_dir=str(staging))
    except _hub_errors() as exc:
        ctx.note_missing(f"{f.target_dir}/", f"Hugging Face Hub unreachable ({type(exc).__name__})")
        return
    except Exception as exc:
        if isinstance(exc, (OSError, TimeoutError)) or "connect" in type(exc).__name__.lower():
            ctx.note_missing(f"{f.target_dir}/", f"Hugging Face Hub unreachable ({type(exc).__name__})")
            return
        raise FetchError(f"hf://{f.repo}@{f.revision}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    placed = []
    for p in sorted(Path(local).rglob("*")):
        if p.is_file() and ".cache" not in p.relative_to(local).parts:
            rel = f"{f.target_dir}/{p.relative_to(local).as_posix()}"
            _place(ctx, p, rel, None)
            placed.append(rel)
    ctx.manifest.save()
    (ctx.root / marker).write_text(json.dumps(placed))
    ctx.manifest.source(ctx.name, {"hub": {f.repo: {"revision": f.revision,
                                                    "commit": _hub_commit(f.repo, f.revision, f.repo_type)}}})


# ------------------------------------------------------------------------------------------ derived steps
def _record_written(ctx: FetchContext, rel: str) -> None:
    ctx.manifest.record(rel, sha256_file(ctx.root / rel))


def extract_zip_members(archive: str, members: dict[str, str]) -> Callable[[FetchContext], None]:
    """Extract ``{member: target}`` from ``root/archive`` (atomically, recorded)."""

    def step(ctx: FetchContext) -> None:
        todo = {m: t for m, t in members.items() if not _up_to_date(ctx, t, None)}
        if not todo:
            return
        if not (ctx.root / archive).exists():
            for t in todo.values():
                ctx.note_missing(t, f"{archive} not downloaded")
            return
        with zipfile.ZipFile(ctx.root / archive) as zf:
            for member, target in todo.items():
                dest = ctx.root / target
                dest.parent.mkdir(parents=True, exist_ok=True)
                part = dest.with_name(dest.name + ".part")
                with zf.open(member) as src, open(part, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
                os.replace(part, dest)
                _record_written(ctx, target)
                ctx.log(f"extracted {member} -> {target}")

    return step


def extract_archive_flat(archive: str, target_dir: str, suffixes: tuple[str, ...] = (".jpg", ".jpeg", ".png"),
                         marker_name: str = ".extracted") -> Callable[[FetchContext], None]:
    """Extract the image files of a zip/tar archive into ``target_dir`` by *base name* (folders inside
    the archive are flattened; nothing is written outside ``target_dir``; links are skipped)."""

    def step(ctx: FetchContext) -> None:
        src = ctx.root / archive
        marker = ctx.root / target_dir / f"{marker_name}-{Path(archive).name}"
        if marker.exists():
            return
        if not src.exists():
            ctx.note_missing(target_dir + "/", f"{archive} not downloaded")
            return
        out = ctx.root / target_dir
        out.mkdir(parents=True, exist_ok=True)
        n = 0

        def put(name: str, fh) -> None:
            nonlocal n
            base = Path(name.replace("\\", "/")).name
            if not base or not base.lower().endswith(suffixes) or base.startswith("."):
                return
            if len(base.encode("utf-8")) > 240:  # the file system limit is 255 bytes, ".part" included
                ctx.log(f"skipped archive member {base[:40]!r}…: file name of {len(base.encode())} bytes is too long")
                return
            dest = out / base
            part = dest.with_name(base + ".part")
            with open(part, "wb") as w:
                shutil.copyfileobj(fh, w, CHUNK)
            os.replace(part, dest)
            ctx.manifest.data["files"][f"{target_dir}/{base}"] = sha256_file(dest)
            n += 1

        if zipfile.is_zipfile(src):
            with zipfile.ZipFile(src) as zf:
                for info in zf.infolist():
                    if not info.is_dir():
                        with zf.open(info) as fh:
                            put(info.filename, fh)
        else:
            with tarfile.open(src) as tf:
                for member in tf:
                    if member.isfile():
                        fh = tf.extractfile(member)
                        if fh is not None:
                            put(member.name, fh)
        ctx.manifest.save()
        marker.write_text(f"{n}\n")
        ctx.log(f"extracted {n} images from {archive} -> {target_dir}/")

    return step


def download_many(ctx: FetchContext, jobs: list[tuple[str, str]], what: str) -> None:
    """Download ``[(url, relpath)]`` with a small thread pool (each file as :func:`download_url`)."""
    todo = [(u, r) for u, r in jobs if not (ctx.root / r).exists() or ctx.manifest.expected(r) is None]
    todo = [(u, r) for u, r in todo if not _up_to_date(ctx, r, None)]
    ctx.present += len(jobs) - len(todo)
    if not todo:
        return
    if ctx.offline:
        for _, r in todo:
            ctx.note_missing(r, "offline mode")
        return
    ctx.log(f"fetch {len(todo)} {what} ({len(jobs) - len(todo)} already present)")
    failures: list[str] = []
    unreachable: list[tuple[str, str]] = []

    def one(job):
        url, rel = job
        try:
            return rel, download_url(url, ctx.root / rel, None, None, ctx.retries, ctx.timeout), None
        except NetworkUnavailable as exc:
            return rel, None, ("offline", str(exc))
        except FetchError as exc:
            return rel, None, ("error", str(exc))

    bar = None
    if ctx.progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc=what, unit="file", file=sys.stderr)
        except ImportError:  # pragma: no cover
            bar = None
    with ThreadPoolExecutor(max_workers=max(1, ctx.workers)) as pool:
        for rel, digest, err in pool.map(one, todo):
            if digest is not None:
                ctx.manifest.data["files"][rel] = digest
                ctx.fetched += 1
            elif err[0] == "offline":
                unreachable.append((rel, err[1]))
            else:
                failures.append(err[1])
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    ctx.manifest.save()
    for rel, why in unreachable:
        ctx.note_missing(rel, why)
    if failures:
        shown = "; ".join(failures[:3]) + (f"; … ({len(failures)} in all)" if len(failures) > 3 else "")
        raise FetchError(f"{len(failures)} of {len(todo)} {what} failed: {shown}")


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


# ------------------------------------------------------------------------------------------ per-source steps
def coco_val_name(image_id: int) -> str:
    return f"COCO_val2014_{int(image_id):012d}.jpg"


def derive_chair_sets(ctx: FetchContext) -> None:
    """``chair/opera_500.jsonl`` and ``chair/lim_chair-500.jsonl``: ``{"image_id", "image"}`` per line."""
    pairs = [("chair/sources/opera_llava-1.5_greedy_captions.jsonl", "chair/opera_500.jsonl", "image_id"),
             ("chair/sources/lim_chair-500.jsonl", "chair/lim_chair-500.jsonl", "image")]
    for src, dest, key in pairs:
        if not (ctx.root / src).exists():
            continue  # reported as missing by the download step
        rows, seen = [], set()
        for line in (ctx.root / src).read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            image_id = int(re.sub(r"\D", "", str(rec[key]).rsplit(".", 1)[0]) if key == "image" else rec[key])
            if image_id not in seen:
                seen.add(image_id)
                rows.append({"image_id": image_id, "image": coco_val_name(image_id)})
        write_jsonl(ctx.root / dest, rows)
        _record_written(ctx, dest)


def coco_protocol_images(ctx: FetchContext) -> None:
    """The COCO val2014 images the POPE (v3 + v1) and CHAIR (OPERA, less-is-more) protocols use."""
    names: set[str] = set()
    for rel in [f"pope/{v}/coco_pope_{s}.json" for v in ("v3", "v1") for s in ("random", "popular", "adversarial")]:
        p = ctx.root / rel
        if p.exists():
            names |= {json.loads(line)["image"] for line in p.read_text().splitlines() if line.strip()}
    for rel in ("chair/opera_500.jsonl", "chair/lim_chair-500.jsonl"):
        p = ctx.root / rel
        if p.exists():
            names |= {json.loads(line)["image"] for line in p.read_text().splitlines() if line.strip()}
    jobs = [(f"http://images.cocodataset.org/val2014/{n}", f"coco/val2014/{n}") for n in sorted(names)]
    download_many(ctx, jobs, "COCO val2014 protocol images")


def _vg_meta(ctx: FetchContext, ids: set[str]) -> dict[str, dict]:
    meta_path = ctx.root / "vg" / "image_data.json"
    if not meta_path.exists():
        raise OfflineError(f"{meta_path} missing: run `python -m bench data fetch vg --root {ctx.root}` first")
    out = {}
    for row in iter_json_array(meta_path):
        iid = str(row.get("image_id", row.get("id")))
        if iid in ids:
            out[iid] = row
    return out


def vg_image_jobs(ctx: FetchContext, ids: set[str]) -> list[tuple[str, str]]:
    meta = _vg_meta(ctx, ids)
    jobs = []
    for iid in sorted(ids, key=lambda s: int(s) if s.isdigit() else 0):
        url = meta.get(iid, {}).get("url")
        if url:
            jobs.append((url, f"vg/images/{iid}.jpg"))
        else:
            print(f"warning: VG image {iid} has no url in image_data.json", file=sys.stderr)
    return jobs


def shr_convert(ctx: FetchContext) -> None:
    """Real SHR → the harness layout ``shr/{images,regions,facts}.jsonl`` (metrics/shr.py), with the SHR
    images downloaded one by one from the ``url`` of VG's ``image_data.json``.

    Inputs as read by ``ha_dpo/shr_eval/json_eval.py`` (benchmarks.md §3.1): ``val_images_final.json`` = a
    list of dicts with ``image_id`` (VG id); ``shr_factual_part{1,2}.jsonl`` = lines ``{"<image_id>":
    [facts]}``; width/height from ``image_data.json``; regions from ``region_descriptions.json``.
    Written to that documented schema; not run against the real files here (no network)."""
    raw = ctx.root / "shr" / "raw"
    val = raw / "val_images_final.json"
    if not val.exists():
        return
    ids = [str(r["image_id"]) if isinstance(r, dict) else str(r) for r in read_json(val)]
    idset = set(ids)
    download_many(ctx, vg_image_jobs(ctx, idset), "SHR images (Visual Genome)")
    meta = _vg_meta(ctx, idset)
    regions: dict[str, list] = {}
    reg_path = ctx.root / "vg" / "region_descriptions.json"
    if not reg_path.exists():
        ctx.note_missing("vg/region_descriptions.json", "run the vg fetch first")
        return
    for row in iter_json_array(reg_path):
        iid = str(row.get("id", row.get("image_id")))
        if iid in idset:
            regions[iid] = [{"x": r["x"], "y": r["y"], "width": r["width"], "height": r["height"],
                             "phrase": r.get("phrase", "")} for r in row.get("regions", [])]
    facts: dict[str, list] = {}
    for part in ("shr_factual_part1.jsonl", "shr_factual_part2.jsonl"):
        p = raw / part
        if p.exists():
            for line in p.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    for k, v in json.loads(line).items():
                        facts.setdefault(str(k), []).extend(v)
    bad = [i for i in ids if Path(f"{i}.jpg").name != f"{i}.jpg" or i in ("", ".", "..")]
    if bad:
        raise DataError(val, f"image ids that are not plain file names: {bad[:3]}")
    images = [{"image_id": int(i) if i.isdigit() else i, "image": f"vg/images/{i}.jpg",
               "width": meta.get(i, {}).get("width"), "height": meta.get(i, {}).get("height")} for i in ids]
    write_jsonl(ctx.root / "shr" / "images.jsonl", images)
    write_jsonl(ctx.root / "shr" / "regions.jsonl",
                [{"image_id": r["image_id"], "regions": regions.get(str(r["image_id"]), [])} for r in images])
    write_jsonl(ctx.root / "shr" / "facts.jsonl",
                [{"image_id": r["image_id"], "facts": facts.get(str(r["image_id"]), [])} for r in images])
    for name in ("images.jsonl", "regions.jsonl", "facts.jsonl"):
        _record_written(ctx, f"shr/{name}")
    ctx.log(f"SHR: {len(images)} images, {sum(1 for i in ids if i in regions)} with regions,"
            f" {sum(1 for i in ids if i in facts)} with facts -> shr/*.jsonl")


def _ids_from_hadpo(ctx: FetchContext) -> set[str]:
    ids: set[str] = set()
    folder = ctx.root / "hadpo" / "llava-v1.5"
    if (folder / "desc_data.json").exists():
        desc = read_json(folder / "desc_data.json")
        ids |= {str(k) for k in desc} if isinstance(desc, dict) else {str(d["image_id"]) for d in desc}
    if (folder / "pope_data.json").exists():
        ids |= {str(r["image_id"]) for r in read_json(folder / "pope_data.json")}
    return ids


def hadpo_images(ctx: FetchContext) -> None:
    """``--with-images``: the VG images of ``hadpo/llava-v1.5`` (urls from ``image_data.json``), hard
    linked next to the JSON files where :func:`bench.data.formats.load_hadpo` looks for them."""
    if not ctx.options.get("with_images"):
        ctx.log("hadpo-data: images not fetched (add --with-images: Visual Genome images via image_data.json)")
        return
    ids = _ids_from_hadpo(ctx)
    download_many(ctx, vg_image_jobs(ctx, ids), "HA-DPO images (Visual Genome)")
    from bench.data.pipelines.base import place_image

    for iid in ids:
        src = ctx.root / "vg" / "images" / f"{iid}.jpg"
        if src.exists():
            place_image(src, ctx.root / "hadpo" / "llava-v1.5" / f"{iid}.jpg")


def objhal_convert(ctx: FetchContext) -> None:
    """Object HalBench's released question file (one JSON object per line: ``image_id``, ``question``, the
    image as base64 ``image``) → ``objhal/images/<image_id>.jpg`` + ``objhal/questions.jsonl``. The file is
    checked against its git blob id at the pinned commit (no sha256 is published)."""
    src = ctx.root / OBJHAL_RAW
    raw = src.read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest()
    if blob != OBJHAL_BLOB:
        raise FetchError(f"{src}: git blob id {blob[:12]} differs from {OBJHAL_BLOB[:12]} (RLAIF-V@{OBJHAL_REV[:7]})")
    rows = []
    for line_no, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            rel = f"objhal/images/{int(rec['image_id'])}.jpg"
            image, question = base64.b64decode(rec["image"]), rec["question"]
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(src, f"not an Object HalBench question row ({exc})", line=line_no) from None
        dest = ctx.root / rel
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            part = dest.with_name(dest.name + ".part")
            part.write_bytes(image)
            os.replace(part, dest)
        _record_written(ctx, rel)
        rows.append({"image_id": int(rec["image_id"]), "question": question, "image": rel})
    write_jsonl(ctx.root / "objhal" / "questions.jsonl", rows)
    _record_written(ctx, "objhal/questions.jsonl")
    ctx.manifest.save()
    ctx.log(f"objhal: {len(rows)} questions, images under objhal/images/")


def povid_images(ctx: FetchContext) -> None:
    """``--with-images``: the COCO train2014 images of the POVID file, one by one, into
    ``coco/train2014/`` (ids are ``COCO_train2014_<12 digits>``)."""
    if not ctx.options.get("with_images"):
        ctx.log("povid-data: images not fetched (add --with-images: COCO train2014 images one by one)")
        return
    path = ctx.root / "povid" / "POVID_preference_data_for_VLLMs_version_1.json"
    if not path.exists():
        return
    names = set()
    for rec in read_json(path):
        rid = str(rec.get("id", ""))
        if re.fullmatch(r"COCO_train2014_\d{12}", rid):
            names.add(rid + ".jpg")
    jobs = [(f"http://images.cocodataset.org/train2014/{n}", f"coco/train2014/{n}") for n in sorted(names)]
    download_many(ctx, jobs, "POVID images (COCO train2014)")


def nltk_step(ctx: FetchContext) -> None:
    """``nltk.download`` of punkt_tab, averaged_perceptron_tagger_eng, wordnet into ``root/nltk_data``."""
    target = ctx.root / "nltk_data"
    wanted = {"punkt_tab": "tokenizers/punkt_tab/english/", "averaged_perceptron_tagger_eng":
              "taggers/averaged_perceptron_tagger_eng/", "wordnet": "corpora/wordnet.zip"}
    import nltk

    def have(res: str) -> bool:  # NLTK's own layout under target (nltk.data.find mishandles zips with paths=)
        p = target / res
        return p.is_file() if res.endswith(".zip") else p.is_dir() and any(p.iterdir())

    failed = ""
    for pkg, res in wanted.items():
        if have(res):
            ctx.present += 1
            continue
        if ctx.offline or failed:
            ctx.note_missing(f"nltk_data/{res}", failed or "offline mode")
            continue
        ctx.log(f"nltk.download({pkg!r}, download_dir={str(target)!r})")
        try:
            ok = nltk.download(pkg, download_dir=str(target), quiet=True, raise_on_error=True,
                               print_error_to=io.StringIO())
        except Exception as exc:  # nltk raises ValueError/URLError/OSError variously when offline
            ok = False
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        else:
            why = "nltk.download returned False"
        if not ok or not have(res):
            failed = f"NLTK download failed ({why[:160]})"
            ctx.note_missing(f"nltk_data/{res}", failed)
        else:
            ctx.fetched += 1
    for p in sorted(target.rglob("*")) if target.exists() else []:
        if p.is_file():
            ctx.manifest.data["files"][p.relative_to(ctx.root).as_posix()] = sha256_file(p)
    ctx.manifest.save()
    if not ctx.missing:
        print(f"NLTK data in {target}: export BENCH_NLTK_DATA={target}", file=sys.stderr)


def mmhal_check_images(ctx: FetchContext) -> None:
    """Every image the MMHal-Bench template names (``basename(image_src)``) must be under ``mmhal/images/``."""
    template = ctx.root / "mmhal" / "response_template.json"
    if not template.exists():
        return
    names = [str(r.get("image_src", "")).split("?", 1)[0].rsplit("/", 1)[-1] for r in read_json(template)]
    for name in names:
        if not (ctx.root / "mmhal" / "images" / name).exists():
            ctx.note_missing(f"mmhal/images/{name}", "not in the MMHal-Bench image folder")


# ------------------------------------------------------------------------------------------ OPA-DPO (manual)
OPA_DRIVE = "https://drive.google.com/drive/folders/1Xmrb43zIbk3IzLLRQx65iBf7J4SHXa9j"
OPA_MANUAL = f"""OPA-DPO's data cannot be fetched automatically: the authors publish their LLaVA-1.5 rollouts with
GPT-4V feedback only in a Google Drive folder (README of zhyang2226/OPA-DPO@db90180, badge "Dataset"):
  {OPA_DRIVE}
There is no Hugging Face mirror, no pinned URL and no published digest, so `bench` does not pretend to
download it. Either
  1. download the folder by hand (a browser, or `gdown --folder <url>`), then convert it here with
       python -m bench data fetch opa-dpo-data --from <downloaded folder> --root <root>
     (<downloaded folder> = the rollouts JSON files the seed's make_opadpo_dataset.py reads, or a dataset
     it saved with save_to_disk, e.g. opadpo_training_data-7B); or
  2. build OPA-DPO data yourself with the on-policy pipeline:
       python -m bench data build opa-dpo --model llava-7b --feedback openai --out <dir>"""


def _opa_rows_from(path: Path) -> list[dict]:
    if (path / "state.json").exists() or (path / "dataset_info.json").exists():
        from datasets import load_from_disk

        ds = load_from_disk(str(path))
        return [dict(r) for r in ds]
    rows: list[dict] = []
    files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
    for f in files:
        data = read_json(f)
        if isinstance(data, list):
            rows.extend(r for r in data if isinstance(r, dict))
    return rows


def opa_convert(ctx: FetchContext) -> None:
    """``--from``: OPA-DPO rollouts (JSON lists) or a saved dataset → ``opa-dpo/opadpo_data.jsonl`` in the
    layout :func:`bench.data.formats.load_opa` reads (image bytes written to ``opa-dpo/images/``), with
    the seed's three filters (empty report, repeated last sentence / word, empty revision)."""
    src = ctx.options.get("from")
    if not src:
        raise OfflineError("opa-dpo-data cannot be downloaded automatically (Google Drive only); run"
                           f" `python -m bench data fetch opa-dpo-data --from <folder> --root {ctx.root}` with a"
                           f" manual download from {OPA_DRIVE}")
    from PIL import Image

    from bench.data.pipelines.opa_dpo import repetitive

    src = Path(src)
    if not src.exists():
        raise BenchError(f"{src}: not found")
    rows = _opa_rows_from(src)
    out_rows, dropped = [], {"empty report": 0, "repetitive rollout": 0, "empty revision": 0, "no image": 0}
    (ctx.root / "opa-dpo" / "images").mkdir(parents=True, exist_ok=True)
    for k, row in enumerate(rows):
        report = row.get("AI_json_report")
        report_s = report if isinstance(report, str) else json.dumps(report, ensure_ascii=False)
        if report_s in ('""', "", "null"):
            dropped["empty report"] += 1
            continue
        rollout = str(row.get("original_generate_response", ""))
        if repetitive(rollout):
            dropped["repetitive rollout"] += 1
            continue
        revision = row.get("AI_pseudo_response")
        if not isinstance(revision, str) or not revision:
            dropped["empty revision"] += 1
            continue
        data = row.get("image_bytes")
        if not data:
            dropped["no image"] += 1
            continue
        raw = base64.b64decode(data) if isinstance(data, str) else bytes(data)
        fmt = (Image.open(io.BytesIO(raw)).format or "PNG").lower()
        ext = {"jpeg": ".jpg"}.get(fmt, "." + fmt)
        name = f"{row.get('image_id', k)}{ext}"
        try:  # image_id comes from the input file: it may not name a path outside opa-dpo/images/
            if Path(name).name != name:
                raise BenchError("not a plain file name")
            dest = confined_path(ctx.root / "opa-dpo" / "images", name, "image_id")
        except BenchError as exc:
            raise DataError(src, f"record {k}: image_id {row.get('image_id')!r} cannot name an image file ({exc})",
                            field="image_id") from None
        rel = f"images/{name}"
        part = dest.with_name(dest.name + ".part")
        part.write_bytes(raw)
        os.replace(part, dest)
        query = str(row.get("queries", row.get("query", "")))
        out_rows.append({"id": str(row.get("image_id", k)), "image": rel, "queries": query,
                         "standard_response": row.get("standard_response", ""),
                         "original_generate_response": rollout, "AI_pseudo_response": revision,
                         "AI_json_report": report_s})
    write_jsonl(ctx.root / "opa-dpo" / "opadpo_data.jsonl", out_rows)
    for p in sorted((ctx.root / "opa-dpo").rglob("*")):
        if p.is_file():
            ctx.manifest.data["files"][p.relative_to(ctx.root).as_posix()] = sha256_file(p)
    ctx.manifest.source("opa-dpo-data", {"converted_from": str(src), "rows": len(out_rows), "dropped": dropped})
    ctx.fetched += len(out_rows)
    print(f"opa-dpo-data: {len(out_rows)} records -> {ctx.root / 'opa-dpo' / 'opadpo_data.jsonl'}"
          f" (dropped: {', '.join(f'{k} {v}' for k, v in dropped.items() if v) or 'none'})", file=sys.stderr)


# ------------------------------------------------------------------------------------------ SOURCES
POPE_V3 = "08d957b917e5a378a2f99d35b6293c536a66298b"
POPE_V1 = "e3e39262c85a6a83f26cf5094022a782cb0df58d"
POPE_FILES = {  # (version, split): (sha256, size) of shared/reference/pope copies (git show at the commits)
    ("v3", "random"): ("ac25245170b975a5bdf9080b23fd431dfe6be458bc038259c1f4f09a6bef7994", 368166),
    ("v3", "popular"): ("72c1a8ad45d0c13514f5f22598261df41d3b533854d29682e924db50ed8aa753", 370190),
    ("v3", "adversarial"): ("420b3407db1fa9f1187a805dca41cb7b97fd91504e6c2179706188c107fb8ef8", 370401),
    ("v1", "random"): ("c16b65d2df6d70bb0814c8a4375833d39cdb09928fd936d3fc546491efa37f35", 360212),
    ("v1", "popular"): ("5b16653023bf4f64d57eb0d168259de6627f5cde7538b85ebed3cc33034aa6cc", 370234),
    ("v1", "adversarial"): ("1d8f0906a9b50c05640f6f23abfac97523be2a1bed28f7eadc63b811699b2d26", 370459),
}
RAW = "https://raw.githubusercontent.com"
VG_HOSTS = ("https://homes.cs.washington.edu/~ranjay/visualgenome/data/dataset",
            "http://visualgenome.org/static/data/dataset")
COCO_ANN = {f"annotations/{k}_{s}2014.json": f"coco/annotations/{k}_{s}2014.json"
            for k in ("instances", "captions") for s in ("train", "val")}
AMBER_HF_REV = "f75c8afc54bdfaa2ecad4f1c04a23801113ec9e3"  # stzhao/amber: AMBER.zip (LFS sha256 below)
OBJHAL_REV = "83d917b2e8118ca8e7877a796d72af9bb3e6b356"  # RLHF-V/RLAIF-V
OBJHAL_BLOB = "cb8e15a81a1ddf720f306fda0decefb1ed80c31f"  # git blob id of obj_halbench_300_with_image.jsonl there
OBJHAL_RAW = "objhal/raw/obj_halbench_300_with_image.jsonl"
MHALU_REV = "03918b3536e972e838f1ab8e683e8d0153d85f16"
POVID_REV = "5a8be9420b40865a5d70aa38afeea23cbd947ade"
RLAIFV_REV = "83d917b2e8118ca8e7877a796d72af9bb3e6b356"
MMHAL_REV = "8c04a4a8ae40b80763eee9b3eadf115e2267bfa6"  # "Update loading script", Nov 2023: images/ + template
LLAVA_BENCH_REV = "9773b6fd2be88d4ced480dcd9bfd4ce76e47f79b"  # the hub's main (Jul 2023)


def _sources() -> dict[str, Source]:
    s: list[Source] = [
        Source("pope", "POPE question files: v3 (AoiDragon/POPE HEAD) and v1 (e3e3926, the LLaVA-1.5 version)",
               [UrlFile(f"pope/{v}/coco_pope_{sp}.json",
                        (f"{RAW}/AoiDragon/POPE/{POPE_V3 if v == 'v3' else POPE_V1}/output/coco/coco_pope_{sp}.json",),
                        sha, size) for (v, sp), (sha, size) in POPE_FILES.items()],
               licence="MIT (AoiDragon/POPE)",
               pinned=f"raw GitHub at {POPE_V3[:12]} (v3) / {POPE_V1[:12]} (v1); sha256 = shared/reference/pope copies"),
        Source("chair-sets", "CHAIR 500-image sets: OPERA's LLaVA-1.5 set and less-is-more's chair-500 → chair/*.jsonl",
               [UrlFile("chair/sources/opera_llava-1.5_greedy_captions.jsonl",
                        (f"{RAW}/shikiw/OPERA/61426efe4e2e53207f32d9112a86ba5f8364d1d9/log/chair_eval_results/llava-1.5/greedy.jsonl",),
                        "3d70bbefa95f1894a09e97e83f2a40531be39b12db50f4e2386c5bfc99842fdd", 259599),
                UrlFile("chair/sources/lim_chair-500.jsonl",
                        (f"{RAW}/yuezih/less-is-more/f26e187aadacc49a7cfc30443f0e9bae865b8e2e/CHAIR-eval/data/chair-500.jsonl",),
                        "d4002b206d2439d96c5955172551ee1129e179f17898f7248b8743ee98dbe32a", 60390)],
               post=[derive_chair_sets], licence="MIT (OPERA) / Apache-2.0 (less-is-more)",
               pinned="raw GitHub at shikiw/OPERA@61426ef, yuezih/less-is-more@f26e187; sha256 = shared/reference/chair copies"),
        Source("coco-val2014", "COCO 2014 annotations (train+val instances/captions) + the val2014 images of the POPE"
                               " and CHAIR protocols, one by one",
               [UrlFile("coco/annotations_trainval2014.zip",
                        ("http://images.cocodataset.org/annotations/annotations_trainval2014.zip",))],
               requires=["pope", "chair-sets"], post=[extract_zip_members("coco/annotations_trainval2014.zip", COCO_ANN),
                                                     coco_protocol_images],
               licence="annotations CC BY 4.0; images Flickr terms",
               pinned="images.cocodataset.org (no published digest: sha256 recorded on first fetch)"),
        Source("coco-val2014-full", "all 40,504 COCO val2014 images (val2014.zip, about 6 GB)",
               [UrlFile("coco/val2014.zip", ("http://images.cocodataset.org/zips/val2014.zip",))],
               post=[extract_archive_flat("coco/val2014.zip", "coco/val2014")], licence="Flickr terms",
               pinned="images.cocodataset.org (digest recorded on first fetch)"),
        Source("coco-train2014-full", "all COCO train2014 images (train2014.zip, about 13 GB) for pipelines on real COCO",
               [UrlFile("coco/train2014.zip", ("http://images.cocodataset.org/zips/train2014.zip",))],
               post=[extract_archive_flat("coco/train2014.zip", "coco/train2014")], licence="Flickr terms",
               pinned="images.cocodataset.org (digest recorded on first fetch)"),
        Source("vg", "Visual Genome v1.2 metadata: image_data.json + region_descriptions.json",
               [UrlFile(f"vg/{n}.json.zip", tuple(f"{h}/{n}.json.zip" for h in VG_HOSTS))
                for n in ("image_data", "region_descriptions")],
               post=[extract_zip_members("vg/image_data.json.zip", {"image_data.json": "vg/image_data.json"}),
                     extract_zip_members("vg/region_descriptions.json.zip",
                                         {"region_descriptions.json": "vg/region_descriptions.json"})],
               licence="CC BY 4.0", pinned="VG download host + visualgenome.org mirror (digest recorded on first fetch)"),
        Source("vg-images", "all Visual Genome images (images.zip + images2.zip, about 15 GB) → vg/images/<id>.jpg",
               [UrlFile(f"vg/{n}", (f"https://cs.stanford.edu/people/rak248/VG_100K_2/{n}",))
                for n in ("images.zip", "images2.zip")],
               post=[extract_archive_flat("vg/images.zip", "vg/images"), extract_archive_flat("vg/images2.zip", "vg/images")],
               licence="CC BY 4.0", pinned="cs.stanford.edu VG_100K_2 (digest recorded on first fetch)"),
        Source("shr", "SHR (HA-DPO): juliozhao/SHR image list + human facts, the SHR images from VG, converted to"
                      " shr/{images,regions,facts}.jsonl",
               [HubFile("juliozhao/SHR", n, f"shr/raw/{n}")
                for n in ("val_images_final.json", "shr_factual_part1.jsonl", "shr_factual_part2.jsonl")],
               requires=["vg"], post=[shr_convert], licence="Apache-2.0 (SHR); CC BY 4.0 (VG)",
               pinned="HF main (hub page: commit 44ac475, Dec 2023; full hash unknown, recorded at fetch)"),
        Source("mhalubench", "MHaluBench (openkg/MHaluBench): val v0.1/v0.2, train, image-to-text images (raw)",
               [HubFile("openkg/MHaluBench", n, f"mhalubench/raw/{n}", MHALU_REV)
                for n in ("MHaluBench_val-v0.1.json", "MHaluBench_val-v0.2.json", "MHaluBench_train.json")]
               + [HubFolder("openkg/MHaluBench", ("data/image-to-text/*",), "mhalubench/raw", MHALU_REV)],
               licence="MIT", pinned=f"HF revision {MHALU_REV[:12]} (from the hub's file pages)"),
        Source("mmhal", "MMHal-Bench: the 96-question answer template (RLAIF-V's copy) + its images (Shengcao1006/MMHal-Bench)",
               [UrlFile("mmhal/response_template.json",
                        (f"{RAW}/RLHF-V/RLAIF-V/{RLAIFV_REV}/eval/data/mmhal-bench_answer_template.json",),
                        "28ed24e19ffef292597c35f1dad37760b2e0a088b3b40ca3b50f105fc1b951bb", 50519),
                HubFolder("Shengcao1006/MMHal-Bench", ("images/*",), "mmhal", MMHAL_REV)],
               post=[mmhal_check_images], licence="Apache-2.0 (MMHal-Bench)",
               pinned=f"raw GitHub at RLHF-V/RLAIF-V@{RLAIFV_REV[:12]} (sha256 of that blob); images HF revision"
                      f" {MMHAL_REV[:12]} (digests recorded at fetch)"),
        Source("llava-bench", "LLaVA-Bench (in-the-wild): questions, context, GPT-4 reference answers, 24 images"
                              " (liuhaotian/llava-bench-in-the-wild)",
               [HubFile("liuhaotian/llava-bench-in-the-wild", n, f"llava-bench/{n}", LLAVA_BENCH_REV)
                for n in ("questions.jsonl", "context.jsonl", "answers_gpt4.jsonl")]
               + [HubFolder("liuhaotian/llava-bench-in-the-wild", ("images/*",), "llava-bench", LLAVA_BENCH_REV)],
               licence="Apache-2.0", pinned=f"HF revision {LLAVA_BENCH_REV[:12]} (digests recorded at fetch)"),
        Source("amber", "AMBER's 1004 images (AMBER.zip) → amber/images/AMBER_<n>.jpg; annotations and queries ship"
                        " with the package (metrics/data/amber)",
               [HubFile("stzhao/amber", "AMBER.zip", "amber/AMBER.zip", AMBER_HF_REV,
                        "b4b95686f4f562eab09d449c2e6483df4071e312e73394a2741d5f76f851489c")],
               post=[extract_archive_flat("amber/AMBER.zip", "amber/images")], licence="Apache-2.0 (junyangwang0410/AMBER)",
               pinned=f"HF mirror stzhao/amber@{AMBER_HF_REV[:12]}, sha256 = its LFS object id (415095542 bytes); the"
                      " authors' original is a Google Drive file (README of junyangwang0410/AMBER@534babf) with no"
                      " published digest, so the mirror's contents could not be compared with it offline"),
        Source("objhal", "Object HalBench: RLAIF-V's 300-question file with base64 images → objhal/questions.jsonl +"
                         " objhal/images/; ground truth from the COCO 2014 annotations",
               [UrlFile(OBJHAL_RAW, (f"{RAW}/RLHF-V/RLAIF-V/{OBJHAL_REV}/eval/data/obj_halbench_300_with_image.jsonl",))],
               requires=["coco-val2014"], post=[objhal_convert], licence="CC BY-NC 4.0 (RLAIF-V data); COCO terms",
               pinned=f"raw GitHub at RLAIF-V@{OBJHAL_REV[:12]}, checked against git blob {OBJHAL_BLOB[:12]} (sha256"
                      " recorded at first fetch)"),
        Source("nltk", "NLTK data for CHAIR's WordNet flavour: punkt_tab, averaged_perceptron_tagger_eng, wordnet",
               post=[nltk_step], licence="see the NLTK data index",
               pinned="nltk.download (its index; no digest pinned here, recorded at fetch)"),
        Source("hadpo-data", "HA-DPO released data (juliozhao/hadpo-data): desc_data.json + pope_data.json per model",
               [HubFile("juliozhao/hadpo-data", f"hadpo/{m}/{n}", f"hadpo/{m}/{n}")
                for m in ("llava-v1.5", "instructblip", "minigpt4") for n in ("desc_data.json", "pope_data.json")],
               post=[hadpo_images], licence="Apache-2.0",
               pinned="HF main (hub page: commit 86ff645; full hash unknown, recorded at fetch)"),
        Source("povid-data", "POVID released preference data (YiyangAiLab/POVID_preference_data_for_VLLMs, _version_1)",
               [HubFile("YiyangAiLab/POVID_preference_data_for_VLLMs", "POVID_preference_data_for_VLLMs_version_1.json",
                        "povid/POVID_preference_data_for_VLLMs_version_1.json", POVID_REV,
                        "e97667408d768e2046bdba6ee25fbb66bff3548fab5144bc1d04b222b2732f85")],
               post=[povid_images], licence="CC BY 4.0",
               pinned=f"HF revision {POVID_REV[:12]}; sha256 = the hub's LFS object id (size 20878161)"),
        Source("hsa-dpo-data", "HSA-DPO released data (WenyiXiao/HSA-DPO): preference + detection JSONL, images tar",
               [HubFile("WenyiXiao/HSA-DPO", n, f"hsa-dpo/{n}") for n in
                ("hsa_dpo_preference_llava1dot5.jsonl", "hsa_dpo_detection.jsonl", "hsa_dpo_imgs.tar.gz")],
               post=[extract_archive_flat("hsa-dpo/hsa_dpo_imgs.tar.gz", "hsa-dpo")],
               licence="see the dataset card", pinned="HF main (no commit known here; recorded at fetch)"),
        Source("opa-dpo-data", "OPA-DPO rollouts + GPT-4V feedback (Google Drive only; --from converts a local copy)",
               post=[opa_convert], manual=OPA_MANUAL, licence="see zhyang2226/OPA-DPO",
               pinned=f"Google Drive folder {OPA_DRIVE} (not fetchable)"),
    ]
    return {x.name: x for x in s}


SOURCES: dict[str, Source] = _sources()


def describe_sources() -> str:
    lines = []
    for src in SOURCES.values():
        lines.append(f"{src.name:<20} {src.description}")
        for f in src.files:
            if isinstance(f, UrlFile):
                lines.append(f"    {f.target:<58} {f.urls[0]}" + (f"  sha256 {f.sha256[:16]}…" if f.sha256 else ""))
            elif isinstance(f, HubFile):
                lines.append(f"    {f.target:<58} hf://{f.repo}/{f.path}@{f.revision[:12]}"
                             + (f"  sha256 {f.sha256[:16]}…" if f.sha256 else ""))
            else:
                lines.append(f"    {f.target_dir + '/':<58} hf://{f.repo}@{f.revision[:12]} {list(f.patterns)}")
        if src.requires:
            lines.append(f"    requires: {', '.join(src.requires)}")
        lines.append(f"    pinned: {src.pinned}; licence: {src.licence}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ entry points
def fetch(name: str, root: str | Path, *, options: dict | None = None, progress: bool = True,
          sources: dict[str, Source] | None = None, _seen: set | None = None, _top: str = "") -> FetchContext:
    """Fetch source ``name`` (and what it requires) into ``root``. Returns the context; the caller
    decides what missing files mean (:func:`main_fetch` turns them into an :class:`OfflineError`)."""
    table = sources if sources is not None else SOURCES
    if name not in table:
        import difflib

        close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise BenchError(f"unknown data source {name!r}{hint} (known: {', '.join(table)})")
    root = Path(root).expanduser().resolve()
    seen = _seen if _seen is not None else set()
    seen.add(name)
    src = table[name]
    ctx = FetchContext(root, name, Manifest(root), offline=offline_mode(), progress=progress, options=options or {},
                       command_name=_top or name)
    deps_missing = False
    for dep in src.requires:
        if dep in seen:
            continue
        sub = fetch(dep, root, options=options, progress=progress, sources=table, _seen=seen, _top=_top or name)
        ctx.manifest = Manifest(root)  # reload: the dependency wrote to it
        ctx.fetched, ctx.present = ctx.fetched + sub.fetched, ctx.present + sub.present
        if sub.missing:
            ctx.missing.extend(sub.missing)
            deps_missing = True  # own files are still fetched (or listed), derived steps are skipped
    if src.manual and not (options or {}).get("from"):
        print(src.manual, file=sys.stderr)
        raise OfflineError(f"{name}: not downloadable automatically (see above); nothing was fetched")
    try:
        for f in src.files:
            if isinstance(f, UrlFile):
                fetch_url_file(ctx, f)
            elif isinstance(f, HubFile):
                fetch_hub_file(ctx, f)
            else:
                fetch_hub_folder(ctx, f)
    finally:
        tidy_staging(root)
    ctx.manifest.save()
    if not ctx.missing and not deps_missing:
        for step in src.post:
            step(ctx)
    ctx.manifest.source(name, {"pinned": src.pinned, "complete": not ctx.missing})
    return ctx


def tidy_staging(root: Path) -> None:
    """Remove what a failed or finished hub download leaves in ``root/.staging``: lock files and empty folders
    (partial downloads — ``*.incomplete`` — are kept so a rerun resumes them)."""
    staging = Path(root) / ".staging"
    if not staging.is_dir():
        return
    for lock in staging.rglob("*.lock"):
        lock.unlink(missing_ok=True)
    for hf in staging.glob("*/.cache/huggingface"):  # huggingface_hub's scaffolding, when nothing is in progress
        if not any(hf.rglob("*.incomplete")):
            for f in ("CACHEDIR.TAG", ".gitignore"):
                (hf / f).unlink(missing_ok=True)
            for meta in hf.rglob("*.metadata"):
                meta.unlink(missing_ok=True)
    for folder in sorted((p for p in staging.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        try:
            folder.rmdir()  # only succeeds when empty
        except OSError:
            pass
    try:
        staging.rmdir()
    except OSError:
        pass


def main_fetch(args) -> int:
    from bench.paths import data_dir

    name = args.name
    if name == "list":
        print(describe_sources())
        return 0
    root = Path(args.root) if getattr(args, "root", None) else data_dir()
    options = {"with_images": getattr(args, "with_images", False), "from": getattr(args, "from_path", None)}
    ctx = fetch(name, root, options=options, progress=not getattr(args, "quiet", False))
    if ctx.missing:
        raise OfflineError(f"{len(ctx.missing)} file(s) of {name!r} missing (offline or unreachable); on a connected"
                           f" machine run `python -m bench data fetch {name} --root {Path(root).expanduser().resolve()}`")
    print(f"{name}: {ctx.fetched} fetched, {ctx.present} already present and verified, under {ctx.root}"
          f" (manifest: {ctx.manifest.path})")
    return 0
