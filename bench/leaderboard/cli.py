"""``python -m bench leaderboard [--out OUT] [--formats md,csv,…] [--paper NAME] [--check DIR]``."""

from __future__ import annotations

from pathlib import Path

from bench.leaderboard import check_up_to_date, write_leaderboards
from bench.leaderboard.papers import paper_table


def main_leaderboard(out: Path, formats: list[str], paper: str | None = None, check: Path | None = None) -> int:
    """Write tables for the records under ``out``; print a paper table; or check ``check`` is up to date."""
    if paper:
        print(paper_table(paper, out))
        return 0
    if check is not None:
        stale = check_up_to_date(out, check)
        for path in stale:
            print(f"stale: {path} (regenerate with `python -m bench leaderboard --out {out}`)")
        print("leaderboards up to date" if not stale else f"{len(stale)} stale table(s)")
        return 1 if stale else 0
    written = write_leaderboards(out, formats)
    md = written.get("md")
    if md:
        print(md.read_text())
    for fmt, path in written.items():
        print(f"wrote {path}")
    return 0
