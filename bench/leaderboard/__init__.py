"""Leaderboards and paper tables built only from run records (``OUT/<model>/<method>/run.json`` + scores).

Modules, one job each: :mod:`~bench.leaderboard.collect` (records → :class:`Table`, refusing mixed
protocols), :mod:`~bench.leaderboard.render` (Markdown, CSV, LaTeX, JSON), :mod:`~bench.leaderboard.page`
(self-contained HTML), :mod:`~bench.leaderboard.plots` (matplotlib figures), :mod:`~bench.leaderboard.write`
(files + up-to-date check), :mod:`~bench.leaderboard.papers` (the seed papers' reported numbers beside
reproduced ones), :mod:`~bench.leaderboard.cli` (``python -m bench leaderboard``).
"""

from __future__ import annotations

from bench.leaderboard.collect import Table, collect
from bench.leaderboard.render import FORMATS
from bench.leaderboard.write import DEFAULT_FORMATS, check_up_to_date, render_all, write_leaderboards

__all__ = ["DEFAULT_FORMATS", "FORMATS", "Table", "check_up_to_date", "collect", "render_all",
           "write_leaderboards"]
