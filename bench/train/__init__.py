"""The shared training loop (``bench.train.loop``), losses, configs and method plumbing.

``bench.train`` is also the Python API's training verb, ``bench.train(method=..., model=..., data=..., out=...)``
(:func:`bench.api.train`; see :mod:`bench.callable_module` for why the package is callable).
"""

from __future__ import annotations

from bench.callable_module import make_callable

make_callable(__name__)
