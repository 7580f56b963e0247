"""The tables in leaderboards/ are regenerated from the run records checked in beside them."""

from pathlib import Path

import pytest

from bench.leaderboard import check_up_to_date

LEADERBOARDS = Path(__file__).resolve().parents[1] / "leaderboards"


def test_checked_in_tables_match_their_records():
    records = LEADERBOARDS / "runs"
    if not any(records.glob("*/*/run.json")):
        pytest.skip("no embedded-default run records checked in under leaderboards/runs")
    import metrics  # noqa: F401  (headline metrics of the registered protocols)

    stale = check_up_to_date(records, LEADERBOARDS)
    assert stale == [], f"regenerate with `python -m bench leaderboard --out leaderboards/runs` and copy: {stale}"
