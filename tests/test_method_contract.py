"""The method and benchmark contract is declared, not probed: abstract bases, optional hooks with documented
defaults, every in-tree entry registered under the name it declares."""

from __future__ import annotations

from pathlib import Path

import pytest

import methods  # noqa: F401  (registers the in-tree methods)
import metrics  # noqa: F401  (registers the in-tree protocols)
from bench.benchmark import Benchmark, EvalItem
from bench.registry import BENCHMARKS, METHODS
from bench.train.method import Method, StepInputs


def test_a_method_without_stages_cannot_be_instantiated():
    class NoStages(Method):
        name = "no-stages"

    with pytest.raises(TypeError, match="stages"):
        NoStages()


def test_a_benchmark_without_items_or_score_cannot_be_instantiated():
    class NoScore(Benchmark):
        name = "no-score"

        def items(self, data_root: Path) -> list[EvalItem]:
            return []

    with pytest.raises(TypeError, match="score"):
        NoScore()


def test_every_registered_method_and_protocol_is_keyed_by_its_declared_name():
    for name, cls in METHODS.items():
        assert issubclass(cls, Method) and cls.name == name
    for name, cls in BENCHMARKS.items():
        assert issubclass(cls, Benchmark) and cls.name == name


def test_optional_hooks_have_their_documented_defaults():
    class Minimal(Benchmark):
        name = "minimal"

        def items(self, data_root: Path) -> list[EvalItem]:
            return []

        def score(self, predictions, data_root, *, n_boot=1000, item_ids=None, cache_dir=None, **kw):
            return {"metrics": {}}

    proto = Minimal()
    assert proto.paired_units({"details": {"per_item": [{"id": "a", "image": "x"}]}}) is None
    assert proto.sample_verdict({}) == {"correct": None}
    assert proto.data_files(Path(".")) == [] and proto.missing_resources(Path(".")) == []
    dpo = METHODS.get("dpo")()
    assert dpo.prepare_records([]) == []
    assert type(dpo.default_config()) is dpo.config_cls


def test_in_tree_protocols_that_rebuild_per_image_counts_override_paired_units():
    overriding = {name for name, cls in BENCHMARKS.items() if cls.paired_units is not Benchmark.paired_units}
    assert {"pope", "chair", "shr", "mhalubench", "mmhal", "llava-bench", "amber", "objhal"} <= overriding


def test_the_summary_gives_no_paired_difference_for_a_protocol_with_the_default_hook(monkeypatch):
    from bench import summary

    class NoPairs(Benchmark):
        name = "no-pairs-protocol"

        def items(self, data_root: Path) -> list[EvalItem]:
            return []

        def score(self, predictions, data_root, *, n_boot=1000, item_ids=None, cache_dir=None, **kw):
            return {"metrics": {}}

    monkeypatch.setitem(BENCHMARKS._entries, NoPairs.name, NoPairs)
    score = {"protocol": NoPairs.name, "version": "1", "fingerprint": NoPairs.fingerprint(), "details": {}}
    assert summary._delta(NoPairs.name, score, score, "accuracy") is None


def test_a_loss_that_needs_the_loop_context_says_so_outside_the_loop():
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="povid stage 2: needs the training loop's step context"):
        StepInputs([], {}, {}).require_context("povid stage 2")


def test_each_method_data_pipeline_declares_its_output_file():
    from bench.data.pipelines import PIPELINES

    for name, cls in METHODS.items():
        if cls.data_pipeline is None:
            continue
        pipeline = PIPELINES.get(cls.data_pipeline)
        assert pipeline.output, f"pipeline {pipeline.name} of method {name} declares no output file"
    assert PIPELINES.get("opa-dpo").sample_rollouts and not PIPELINES.get("hsa-dpo").sample_rollouts
