"""Paired bootstrap differences from base: the statistic, the per-benchmark unit tables, the leaderboard."""

from __future__ import annotations

import numpy as np
import pytest

from bench.stats import paired_bootstrap_delta


def _rate(s: np.ndarray) -> dict[str, float]:
    return {"rate": s[0] / s[1]}


def test_paired_delta_of_identical_runs_is_exactly_zero():
    units = {str(i): np.array([i % 3, 3]) for i in range(40)}
    out = paired_bootstrap_delta(units, dict(units), _rate, n_boot=200)
    assert out["rate"] == (0.0, 0.0, 0.0)


def test_paired_delta_detects_a_small_consistent_shift_that_unpaired_cis_would_blur():
    rng = np.random.default_rng(1)
    # images differ a lot in difficulty (0..9 errors of 10); the method fixes exactly one error on each
    a = {str(i): np.array([int(k), 10]) for i, k in enumerate(rng.integers(1, 10, size=60))}
    b = {key: v - np.array([1, 0]) for key, v in a.items()}
    d, lo, hi = paired_bootstrap_delta(a, b, _rate, n_boot=500)["rate"]
    assert d == pytest.approx(-0.1)
    assert lo == pytest.approx(-0.1) and hi == pytest.approx(-0.1)  # every resample sees the same shift


def test_paired_delta_uses_only_units_both_runs_scored():
    a = {"x": np.array([1, 2]), "y": np.array([0, 2])}
    b = {"y": np.array([2, 2]), "z": np.array([0, 2])}
    d, lo, hi = paired_bootstrap_delta(a, b, _rate, n_boot=50)["rate"]
    assert (d, lo, hi) == (1.0, 1.0, 1.0)
    assert paired_bootstrap_delta({"x": np.array([1, 2])}, {"z": np.array([1, 2])}, _rate) == {}


def test_pope_paired_units_rebuild_the_scored_metrics():
    from metrics.pope import Pope

    bench = Pope()
    items = [{"id": "adversarial/1", "image": "a.png", "label": "yes", "parsed": "yes"},
             {"id": "adversarial/2", "image": "a.png", "label": "no", "parsed": "yes"},
             {"id": "adversarial/3", "image": "b.png", "label": "no", "parsed": "no"},
             {"id": "random/4", "image": "b.png", "label": "no", "parsed": "no"}]
    units, stat = bench.paired_units({"details": {"per_item": items}})
    assert set(units) == {"a.png", "b.png"}
    total = stat(sum(units.values()))
    assert total["adversarial/accuracy"] == pytest.approx(2 / 3)
    assert total["random/accuracy"] == 1.0
    assert bench.paired_units({"details": {"per_item": [{"id": "random/1", "label": "no", "parsed": "no"}]}}) is None


def test_chair_paired_units_rebuild_the_scored_metrics():
    from metrics.chair import ChairProtocol

    rows = [{"image_id": 1, "mentioned_words": ["dog", "cat"], "hallucinated": ["cat"], "n_covered": 1, "n_gt": 2,
             "n_raw_words": 6, "metrics": {"CHAIRs": 1}},
            {"image_id": 2, "mentioned_words": ["cup"], "hallucinated": [], "n_covered": 1, "n_gt": 1,
             "n_raw_words": 4, "metrics": {"CHAIRs": 0}}]
    units, stat = ChairProtocol().paired_units({"details": {"per_caption": rows}})
    total = stat(sum(units.values()))
    assert total == {"chair_s": 0.5, "chair_i": pytest.approx(1 / 3), "recall": pytest.approx(2 / 3), "len": 5.0}
