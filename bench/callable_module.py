"""Packages that are also verbs of the Python API: ``bench.train(...)`` and ``bench.leaderboard(...)``.

``bench.train`` and ``bench.leaderboard`` are packages, and importing a package sets it as an attribute of
its parent — so a function of the same name on ``bench`` would be replaced as soon as anything imports the
package. Instead the package module's class becomes a :class:`types.ModuleType` subclass whose
``__call__`` forwards to the API function of the same name (:mod:`bench.api`, imported on the first call);
attribute access on the package is unchanged.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _VerbModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from bench import api  # on call only: the API pulls in torch and the pipeline

        return getattr(api, self.__name__.rsplit(".", 1)[1])(*args, **kwargs)


def make_callable(module_name: str) -> None:
    """Make the already-imported package ``module_name`` (``bench.train``, ``bench.leaderboard``) callable."""
    sys.modules[module_name].__class__ = _VerbModule
