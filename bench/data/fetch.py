"""``python -m bench data fetch NAME``: download the real benchmark and training data into the data root.

Three modules do the work, this one composes them: :mod:`bench.data.catalogue` (the pinned table
:data:`~bench.data.catalogue.SOURCES`: what to fetch, from where, at which revision and digest),
:mod:`bench.data.download` (the transport: HTTP with ``Range`` resume and sha256 checks, Hugging Face files
through a staging folder, the manifest, offline handling) and :mod:`bench.data.convert` (the steps that turn
released files into the harness's layout). :func:`fetch` fetches a source and the sources it requires, in
order; the derived steps of a source run only when none of its files is missing.

Guarantees: never a partial file at a final path; every file written recorded with its sha256 in
``<root>/manifest.json`` (``bench data verify`` re-checks them); a rerun with everything present is cheap
and works offline. Offline (``HF_HUB_OFFLINE=1`` or ``BENCH_OFFLINE=1``, or no route to the host): one line
per missing file naming the exact fetch command, then a one-line error (exit 2), no traceback.

``opa-dpo-data`` cannot be fetched: the authors publish it only in a Google Drive folder (methods.md
§4.3); the entry prints where to get it and converts a local copy with ``--from``.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

from bench.data.catalogue import SOURCES, Source, describe_sources
from bench.data.download import (FetchContext, HubFile, Manifest, UrlFile, fetch_hub_file, fetch_hub_folder,
                                 fetch_url_file, offline_mode, tidy_staging)
from bench.errors import BenchError, OfflineError
from bench.paths import data_dir


def fetch(name: str, root: str | Path, *, options: dict | None = None, progress: bool = True,
          sources: dict[str, Source] | None = None, _seen: set | None = None, _top: str = "") -> FetchContext:
    """Fetch source ``name`` (and what it requires) into ``root``. Returns the context; the caller
    decides what missing files mean (:func:`main_fetch` turns them into an :class:`OfflineError`)."""
    table = sources if sources is not None else SOURCES
    if name not in table:
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


def main_fetch(args) -> int:
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
