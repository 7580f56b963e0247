"""The shared training loop (``bench.train.loop``), losses, configs and method plumbing.

``bench.train`` is also the Python API's training verb, ``bench.train(method=..., model=..., data=..., out=...)``
(:func:`bench.api.train`; see :mod:`bench.callable_module` for why the package is callable).
"""

from __future__ import annotations

from typing import Any

from bench.callable_module import make_callable


def _train_verb(*args: Any, **kwargs: Any) -> Any:
    """``bench.train(...)`` = :func:`bench.api.train`."""
    from bench.api import train  # on call only (start-up time): the API pulls in torch, the loop and the pipeline

    return train(*args, **kwargs)


make_callable(__name__, _train_verb)
