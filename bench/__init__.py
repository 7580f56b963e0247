"""bench — hallucination benchmarks and trainers for LVLMs.

The Python API (:mod:`bench.api`) is re-exported lazily, so ``import bench`` stays cheap (no torch import
until a verb is used): ``bench.evaluate(model=..., benchmarks=[...], out=...)``,
``bench.train(method=..., model=..., data=..., out=...)``, ``bench.leaderboard(runs_dir)``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["evaluate", "leaderboard", "train"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from bench import api  # lazy: keeps `import bench` free of torch/transformers

        return getattr(api, name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
