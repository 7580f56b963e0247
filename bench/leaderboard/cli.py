"""``python -m bench leaderboard [--out OUT] [--formats md,csv,tex,json,html] [--paper NAME] [--check DIR]``.

The lead's ``bench/cli.py`` parses the arguments and calls::

    main_leaderboard(out: Path | str = "runs", formats: Sequence[str] | str | None = None,
                     paper: str | None = None, check: Path | str | None = None) -> int

* default: collect the run records under ``out``, write ``out/leaderboard.<ext>`` for each format
  (all five when ``formats`` is None; ``"md,csv"`` or ``["md", "csv"]`` otherwise), print the
  Markdown table and the paths written; returns 0.
* ``paper="ha-dpo"`` (or povid, hsa-dpo, opa-dpo): print that paper's reported numbers beside the
  ones reproduced from the records under ``out``, with the CI, Δ and whether the reported number is
  inside the CI (see :mod:`bench.leaderboard.papers`); only the rows bench can run unless
  ``show_all`` (CLI ``--all``); writes nothing; returns 0.
* ``check=DIR``: regenerate in memory from the records under ``out`` and compare with
  ``DIR/leaderboard.<ext>`` for each format; prints each stale file with a short diff; returns 0 when
  all are up to date, 1 otherwise (for CI: ``python -m bench leaderboard --out leaderboards/runs
  --check leaderboards``).

Errors in the records (none found, a malformed file, mixed protocol versions in one column, an
unknown format or paper) raise :class:`bench.errors.BenchError`, which the CLI reports as one line
with exit status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from bench.leaderboard.papers import paper_table
from bench.leaderboard.write import check_up_to_date, explain_difference, parse_formats, write_leaderboards


def main_leaderboard(out: Path | str = "runs", formats: Sequence[str] | str | None = None,
                     paper: str | None = None, check: Path | str | None = None, show_all: bool = False) -> int:
    """Write, print or check leaderboards built from the run records under ``out`` (see module doc)."""
    out = Path(out)
    fmts = parse_formats(formats)
    if paper:
        print(paper_table(paper, out, show_all=show_all), end="")
        return 0
    if check is not None:
        stale = check_up_to_date(out, Path(check), fmts)
        for path in stale:
            print(explain_difference(out, path))
        if stale:
            print(f"{len(stale)} stale leaderboard file(s) in {check}; regenerate with "
                  f"`python -m bench leaderboard --out {out}` and copy leaderboard.* into {check}")
            return 1
        print(f"leaderboards in {check} are up to date with the records under {out}")
        return 0
    written = write_leaderboards(out, fmts)
    if "md" in written:
        print(written["md"].read_text(encoding="utf-8"))
    for path in written.values():
        print(f"wrote {path}")
    return 0
