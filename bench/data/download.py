"""Transport of ``bench data fetch``: download, resume, check, place, record.

* :func:`download_url` — HTTP(S) with the standard library: the download goes to ``<target>.part`` with
  ``Range`` resume (a cut connection or a killed run continues where it stopped; a server that ignores
  ``Range`` restarts the file), mirrors tried in order, bounded retries, checked against the published
  sha256 (a mismatch deletes the download and fails), renamed into place atomically — never a partial file
  at the final path.
* :func:`fetch_hub_file` / :func:`fetch_hub_folder` — Hugging Face files through
  ``huggingface_hub.hf_hub_download`` / ``snapshot_download`` into a staging folder under the root
  (``<root>/.staging``, tidied by :func:`tidy_staging`), checked, and moved into place the same way; the
  resolved commit is recorded.
* :class:`Manifest` — ``<root>/manifest.json``: every file written as ``{relpath: sha256}`` (on first fetch
  when no digest is published); a file already present with its recorded digest is not downloaded again,
  so a rerun is cheap and works offline. ``bench data verify`` re-checks them all.
* Offline (``HF_HUB_OFFLINE=1`` or ``BENCH_OFFLINE=1``, or no route to the host): the file is noted as
  missing (:meth:`FetchContext.note_missing`, one line naming the exact fetch command), never an error
  in the middle of a run.
* :func:`extract_zip_members`, :func:`extract_archive_flat`, :func:`download_many` — derived steps that
  unpack archives and fetch many small files (per-image URLs) with a thread pool.

Why not ``pooch`` or ``huggingface_hub`` for the plain URLs: ``huggingface_hub`` (a dependency already)
serves every Hub file here, but its HTTP download helper for arbitrary URLs is internal API; ``pooch``
would add a dependency without two things these sources need — resuming a multi-GB partial download with
``Range`` (COCO val2014 is 6 GB, VG's images 15 GB) and falling back over mirror URLs — and its cache layout
(one folder per registry) does not match the data-root layout the benchmarks read. The standard-library
transport stays (about 250 lines, tested against a local HTTP server).
"""

from __future__ import annotations

import http.client
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
from typing import Any, Callable

from bench.errors import BenchError
from bench.io import atomic_write_json, read_json, sha256_file

USER_AGENT = "bench-data-fetch/1 (+python urllib)"
CHUNK = 1 << 16


class FetchError(BenchError):
    """A download failed for a reason other than being offline (HTTP 404, sha256 mismatch, …)."""


class NetworkUnavailable(Exception):
    """No route to the host (DNS failure, refused, unreachable) or offline mode: the file is *missing*."""



# ------------------------------------------------------------------------------------------ what to download
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
    from huggingface_hub import errors as hf_errors  # on use (start-up time): slow to import, Hub sources only

    return tuple(getattr(hf_errors, n) for n in ("LocalEntryNotFoundError", "OfflineModeIsEnabled")
                 if hasattr(hf_errors, n))


def _hub_commit(repo: str, revision: str, repo_type: str) -> str | None:
    if re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    try:
        from huggingface_hub import HfApi  # on use (start-up time)

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
    import huggingface_hub  # on use (start-up time): slow to import, Hub sources only

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
    import huggingface_hub  # on use (start-up time): slow to import, Hub sources only

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
def record_written(ctx: FetchContext, rel: str) -> None:
    """Record ``rel`` (written under the root) in the manifest with its sha256."""
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
                record_written(ctx, target)
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
            from tqdm import tqdm  # on use (start-up time): only with a progress bar

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
