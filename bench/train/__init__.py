"""The shared training loop (``bench.train.loop``), losses, configs and method plumbing.

``bench.train`` is also the Python API's training verb, ``bench.train(method=..., model=..., data=..., out=...)``
(:func:`bench.api.train`): a package and a function cannot share the name ``bench.train`` otherwise, because
importing the package sets the attribute on ``bench``. So this module's class is a :class:`types.ModuleType`
subclass whose ``__call__`` forwards to :func:`bench.api.train`; everything else about the package is unchanged.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        from bench.api import train  # lazy: the API pulls in the pipeline

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
