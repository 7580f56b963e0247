"""Write the leaderboard files, and check checked-in copies against a regeneration.

``write_leaderboards(out_dir)`` renders the records under ``out_dir`` and writes
``<dest>/leaderboard.<ext>`` for each format, each atomically (:func:`bench.io.atomic_write_text`).
``check_up_to_date(records_dir, tables_dir)`` renders in memory and lists the files under
``tables_dir`` that are missing or differ byte for byte — the CI check that ``leaderboards/`` was
regenerated after its records changed. Rendering is deterministic (see :mod:`bench.leaderboard.render`);
the HTML page embeds matplotlib PNGs, identical for a given matplotlib/FreeType build.

With the ``html`` format, every figure is also written as ``<dest>/plots/<slug>.png`` and ``.svg`` (for
papers; the page links them). The up-to-date check compares the ``leaderboard.<ext>`` files only: the
page embeds the same PNGs, so a stale figure already makes the HTML stale.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Callable, Iterable

from bench.errors import BenchError
from bench.io import atomic_write_bytes, atomic_write_text
from bench.leaderboard.collect import Table, collect
from bench.leaderboard.page import html_page
from bench.leaderboard.plots import all_plots
from bench.leaderboard.render import TEXT_FORMATS

FORMATS: dict[str, Callable[[Table], str]] = {**TEXT_FORMATS, "html": html_page}
DEFAULT_FORMATS: tuple[str, ...] = ("md", "csv", "tex", "json", "html")


def parse_formats(formats: Iterable[str] | str | None) -> tuple[str, ...]:
    """``"md,csv"`` or ``["md", "csv"]`` (None → all) → validated, de-duplicated tuple."""
    if formats is None:
        return DEFAULT_FORMATS
    if isinstance(formats, str):
        formats = formats.split(",")
    out: list[str] = []
    for fmt in formats:
        fmt = fmt.strip().lower().lstrip(".")
        if fmt and fmt not in out:
            out.append(fmt)
    unknown = [f for f in out if f not in FORMATS]
    if unknown:
        raise BenchError(f"unknown leaderboard format(s) {', '.join(unknown)}; choose from {', '.join(DEFAULT_FORMATS)}")
    if not out:
        raise BenchError("no leaderboard format given")
    return tuple(out)


def render_all(table: Table, formats: Iterable[str] | str | None = None) -> dict[str, str]:
    """Format name → rendered text."""
    return {fmt: FORMATS[fmt](table) for fmt in parse_formats(formats)}


def write_leaderboards(out_dir: str | Path, formats: Iterable[str] | str | None = DEFAULT_FORMATS,
                       dest: str | Path | None = None) -> dict[str, Path]:
    """Write ``leaderboard.<ext>`` for the run records under ``out_dir`` into ``dest`` (default ``out_dir``)."""
    table = collect(out_dir)
    fmts = parse_formats(formats)
    dest = Path(dest) if dest is not None else Path(out_dir)
    texts = {fmt: FORMATS[fmt](table) for fmt in fmts if fmt != "html"}
    written = {fmt: atomic_write_text(dest / f"leaderboard.{fmt}", text) for fmt, text in texts.items()}
    if "html" in fmts:
        plots = all_plots(table)
        for plot in plots:
            atomic_write_bytes(dest / "plots" / f"{plot.slug}.png", plot.png)
            atomic_write_text(dest / "plots" / f"{plot.slug}.svg", plot.svg)
        written["html"] = atomic_write_text(dest / "leaderboard.html", html_page(table, plots))
    return {fmt: written[fmt] for fmt in fmts}


def check_up_to_date(records_dir: str | Path, tables_dir: str | Path,
                     formats: Iterable[str] | str | None = DEFAULT_FORMATS) -> list[str]:
    """Paths of ``tables_dir/leaderboard.<ext>`` that are missing or differ from a regeneration (sorted)."""
    stale = []
    for fmt, text in render_all(collect(records_dir), formats).items():
        path = Path(tables_dir) / f"leaderboard.{fmt}"
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(str(path))
    return sorted(stale)


def explain_difference(records_dir: str | Path, path: str | Path, max_lines: int = 20) -> str:
    """A short unified diff (checked-in → regenerated) for one stale file, for the CLI's report."""
    path = Path(path)
    fmt = path.suffix.lstrip(".")
    if not path.exists():
        return f"{path}: missing"
    if fmt == "html":
        return f"{path}: differs (HTML page; regenerate it)"
    new = render_all(collect(records_dir), [fmt])[fmt]
    diff = list(difflib.unified_diff(path.read_text(encoding="utf-8").splitlines(), new.splitlines(),
                                     fromfile=f"{path} (checked in)", tofile="regenerated", lineterm="", n=0))
    more = f"\n… {len(diff) - max_lines} more diff lines" if len(diff) > max_lines else ""
    return "\n".join(diff[:max_lines]) + more
