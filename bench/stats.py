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


def paired_bootstrap_delta(
    units_a: Mapping[str, "np.ndarray"],
    units_b: Mapping[str, "np.ndarray"],
    statistic: Callable[["np.ndarray"], Mapping[str, float]],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, tuple[float, float, float]]:
    """Paired bootstrap of a difference, ``metric(b) - metric(a)``, over the units both runs scored.

    ``units_*`` map a unit key (an image) to that unit's count array; ``statistic`` turns a *sum* of unit
    arrays into metrics. Each resample draws one set of units and evaluates both runs on it, so the
    between-image variance shared by the two runs cancels — the test for "did this checkpoint change the
    metric", which two unpaired intervals answer only conservatively. Returns metric → (difference on all
    common units, lower, upper) with the percentile interval; empty when no unit is shared.
    """
    keys = sorted(set(units_a) & set(units_b))
    if not keys:
        return {}
    a = np.stack([np.asarray(units_a[k]) for k in keys])
    b = np.stack([np.asarray(units_b[k]) for k in keys])

    def diff(idx: "np.ndarray | slice") -> dict[str, float]:
        sa, sb = statistic(a[idx].sum(axis=0)), statistic(b[idx].sum(axis=0))
        return {m: float(sb[m]) - float(sa[m]) for m in sa if m in sb and sa[m] is not None and sb[m] is not None}

    point = diff(slice(None))
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {m: [] for m in point}
    for _ in range(n_boot):
        for m, v in diff(rng.integers(0, len(keys), size=len(keys))).items():
            if m in draws and math.isfinite(v):
                draws[m].append(v)
    return {m: (point[m], float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2)))
            for m, v in draws.items() if v and math.isfinite(point[m])}
