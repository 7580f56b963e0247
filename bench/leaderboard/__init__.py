"""Leaderboards built only from run records (see collect.py, render.py, papers.py)."""

from __future__ import annotations

from pathlib import Path

from bench.errors import BenchError
from bench.io import atomic_write_text
from bench.leaderboard.collect import Table, collect
from bench.leaderboard.render import FORMATS

DEFAULT_FORMATS = ("md", "csv", "tex", "json", "html")


def render_all(table: Table, formats=DEFAULT_FORMATS) -> dict[str, str]:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise BenchError(f"unknown leaderboard format(s) {unknown}; choose from {sorted(FORMATS)}")
    return {fmt: FORMATS[fmt](table) for fmt in formats}


def write_leaderboards(out: str | Path, formats=DEFAULT_FORMATS, dest: str | Path | None = None) -> dict[str, Path]:
    """Write ``leaderboard.<fmt>`` for the run records under ``out`` (into ``dest``, default ``out``)."""
    dest = Path(dest) if dest is not None else Path(out)
    return {fmt: atomic_write_text(dest / f"leaderboard.{fmt}", text)
            for fmt, text in render_all(collect(out), formats).items()}


def check_up_to_date(records: str | Path, tables: str | Path, formats=("md", "csv", "json", "tex")) -> list[str]:
    """Names of the checked-in tables under ``tables`` that differ from a regeneration from ``records``."""
    stale = []
    for fmt, text in render_all(collect(records), formats).items():
        path = Path(tables) / f"leaderboard.{fmt}"
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(str(path))
    return stale
