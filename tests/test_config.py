import pytest

from bench.config import config_hash, from_dict, load_yaml, merge, parse_overrides, to_dict
from bench.errors import BenchError
from bench.pipeline import RunConfig
from bench.train.config import TrainConfig


def test_yaml_then_overrides_resolve_in_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: tiny-llava\nseed: 3\neval:\n  limit: 10\nmethods: [dpo]\n")
    cfg = merge(RunConfig(), load_yaml(path))
    cfg = merge(cfg, parse_overrides(["eval.limit=5", "method.dpo.beta=0.2", "benchmarks=pope,chair"]))
    assert cfg.seed == 3 and cfg.eval.limit == 5 and cfg.methods == ["dpo"]
    assert cfg.benchmarks == ["pope", "chair"]
    assert cfg.method == {"dpo": {"beta": 0.2}}


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(BenchError, match=r"unknown key\(s\) \['sed'\]"):
        merge(RunConfig(), {"sed": 1})
    with pytest.raises(BenchError, match="eval"):
        merge(RunConfig(), parse_overrides(["eval.limt=3"]))


def test_values_are_type_checked():
    with pytest.raises(BenchError, match="expected int"):
        merge(RunConfig(), {"seed": "three"})
    assert merge(TrainConfig(), {"lr": "1e-4"}).lr == pytest.approx(1e-4)
    assert merge(TrainConfig(), {"max_steps": "none"}).max_steps is None
    assert merge(TrainConfig(), {"bf16": "false"}).bf16 is False


def test_hash_is_stable_and_sensitive():
    a, b = RunConfig(), RunConfig()
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) == config_hash(from_dict(RunConfig, to_dict(a)))
    assert config_hash(merge(a, {"seed": 1})) != config_hash(a)


def test_malformed_override_is_rejected():
    with pytest.raises(BenchError, match="key=value"):
        parse_overrides(["seed"])
