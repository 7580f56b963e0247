"""Bootstrap confidence intervals, resampling whole units (images), seeded.

``bootstrap_ci(units, statistic)`` draws ``n_boot`` resamples of ``units`` with replacement,
recomputes ``statistic`` (which returns a dict of metric → float) on each, and returns the
percentile interval ``[q(alpha/2), q(1 - alpha/2)]`` per metric. Units are whatever the
benchmark's independent sampling unit is — for POPE, CHAIR and SHR, an image with all its
items — so correlated items of one image move together.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence, TypeVar

import numpy as np

U = TypeVar("U")


def bootstrap_ci(
    units: Sequence[U],
    statistic: Callable[[Sequence[U]], Mapping[str, float]],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, list[float]]:
    """Percentile bootstrap CI per metric; NaN resamples are ignored; empty input → {}."""
    n = len(units)
    if n == 0 or n_boot <= 0:
        return {}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n_boot):
        idx = rng.integers(0, n, size=n)
        stat = statistic([units[i] for i in idx])
        for key, value in stat.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            draws.setdefault(key, []).append(float(value))
    return {
        key: [float(np.quantile(vals, alpha / 2)), float(np.quantile(vals, 1 - alpha / 2))]
        for key, vals in draws.items()
        if vals
    }
