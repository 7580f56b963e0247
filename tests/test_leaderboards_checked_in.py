"""The tables checked in under leaderboards/ are regenerated from the run records checked in beside them
(``leaderboards/runs/<model>/<method>/``): the CI form of ``python -m bench leaderboard --out leaderboards/runs
--check leaderboards``. Skips while no records are checked in."""

from pathlib import Path

import pytest

from bench.leaderboard import DEFAULT_FORMATS, check_up_to_date

LEADERBOARDS = Path(__file__).resolve().parents[1] / "leaderboards"


def test_checked_in_tables_match_their_records():
    records = LEADERBOARDS / "runs"
    if not any(records.glob("*/*/run.json")):
        pytest.skip("no run records checked in under leaderboards/runs")
    formats = [f for f in DEFAULT_FORMATS if (LEADERBOARDS / f"leaderboard.{f}").exists()]
    assert "md" in formats, "leaderboards/leaderboard.md is missing beside leaderboards/runs"
    stale = check_up_to_date(records, LEADERBOARDS, formats)
    assert stale == [], (f"regenerate with `python -m bench leaderboard --out leaderboards/runs` and copy"
                         f" leaderboards/runs/leaderboard.* to leaderboards/: {stale}")
