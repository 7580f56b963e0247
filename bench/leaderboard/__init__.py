"""Leaderboards and paper tables built only from run records (``OUT/<model>/<method>/run.json`` + scores).

Modules, one job each: :mod:`~bench.leaderboard.collect` (records → :class:`Table`, refusing mixed
protocols), :mod:`~bench.leaderboard.render` (Markdown, CSV, LaTeX, JSON), :mod:`~bench.leaderboard.page`
(self-contained HTML), :mod:`~bench.leaderboard.plots` (matplotlib figures), :mod:`~bench.leaderboard.write`
(files + up-to-date check), :mod:`~bench.leaderboard.frame` (the ``pandas.DataFrame`` view), :mod:`~bench.leaderboard.papers` (the seed papers' reported numbers beside
reproduced ones), :mod:`~bench.leaderboard.cli` (``python -m bench leaderboard``).

``bench.leaderboard(runs_dir)`` is also the Python API's verb returning a ``pandas.DataFrame``
(:func:`bench.leaderboard.frame.leaderboard`, re-exported as :func:`bench.api.leaderboard`; see
:mod:`bench.callable_module` for why the package is callable).
"""

from __future__ import annotations

from bench.callable_module import make_callable
from bench.leaderboard.collect import Table, collect
from bench.leaderboard.frame import leaderboard
from bench.leaderboard.write import DEFAULT_FORMATS, FORMATS, check_up_to_date, render_all, write_leaderboards

__all__ = ["DEFAULT_FORMATS", "FORMATS", "Table", "check_up_to_date", "collect", "render_all",
           "write_leaderboards"]

make_callable(__name__, leaderboard)
