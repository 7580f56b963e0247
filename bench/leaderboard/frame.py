"""The leaderboard as a ``pandas.DataFrame``: the Python API's ``bench.leaderboard(runs_dir)``.

One row per (run, headline metric) with the value, its 95% CI and the paired difference from base (NaN where
there is none) — the same numbers as ``leaderboard.csv`` (:func:`bench.leaderboard.collect.collect`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.leaderboard.collect import collect
from bench.plugins import load_plugins

LEADERBOARD_COLUMNS = ("model", "method", "checkpoint", "protocol", "benchmark", "metric", "label",
                       "higher_is_better", "value", "ci_low", "ci_high", "delta", "delta_low", "delta_high")


def leaderboard(runs_dir: str | Path = "runs") -> Any:
    """The run records under ``runs_dir`` as a long ``pandas.DataFrame``: one row per (run, headline metric)
    with the value, its 95% CI and the paired difference from base (NaN where there is none) — the same
    numbers as ``leaderboard.csv``. Wide view: ``df.pivot_table(index="method", columns="label", values="value")``."""
    import pandas as pd  # imported on use: slow to import, and `bench leaderboard` never needs it (start-up time)

    load_plugins()
    table = collect(runs_dir)
    nan = float("nan")
    records = []
    for row in table.rows:
        for col in table.columns:
            cell = row.cells.get(col.key)
            if cell is None:
                continue
            lo, hi = cell.ci if cell.ci is not None else (nan, nan)
            d = cell.delta if cell.delta is not None else (nan, nan, nan)
            records.append((row.model, row.method, row.checkpoint, col.protocol, col.benchmark, col.metric,
                            col.label, col.higher_is_better, cell.value, lo, hi, *d))
    return pd.DataFrame.from_records(records, columns=list(LEADERBOARD_COLUMNS))
