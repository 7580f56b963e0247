"""Packages that are also verbs of the Python API: ``bench.train(...)`` and ``bench.leaderboard(...)``.

``bench.train`` and ``bench.leaderboard`` are packages, and importing a package sets it as an attribute of
its parent — so a function of the same name on ``bench`` would be replaced as soon as anything imports the
package. Instead the package module's class becomes a :class:`types.ModuleType` subclass whose
``__call__`` forwards to the verb the package hands to :func:`make_callable` (``bench.leaderboard``: its
own :func:`bench.leaderboard.frame.leaderboard`; ``bench.train``: :func:`bench.api.train`, imported on the
first call); attribute access on the package is unchanged. This module imports nothing of the project.
"""

from __future__ import annotations

import sys
import types
from typing import Any, Callable


class _VerbModule(types.ModuleType):
    __verb__: Callable[..., Any]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__verb__(*args, **kwargs)


def make_callable(module_name: str, verb: Callable[..., Any]) -> None:
    """Make the already-imported package ``module_name`` callable: calling it calls ``verb``."""
    module = sys.modules[module_name]
    module.__class__ = _VerbModule
    module.__verb__ = verb
