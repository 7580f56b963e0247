"""Optional trackers (``TrainConfig.log_with``): a missing package is a one-line error naming it, before any
training; unknown names are refused; the setting does not change the stage fingerprint (resume still works)."""

import importlib.util

import pytest

import methods  # noqa: F401
from bench.errors import BenchError


def test_unknown_tracker_name_is_refused():
    from bench.train.trackers import parse_log_with

    assert parse_log_with("tensorboard, wandb") == ["tensorboard", "wandb"]
    assert parse_log_with(None) == []
    with pytest.raises(BenchError, match="unknown tracker.*mlflow"):
        parse_log_with("mlflow")


@pytest.mark.parametrize("tracker,package", [("tensorboard", "tensorboard"), ("wandb", "wandb")])
def test_missing_tracker_package_stops_before_training_naming_the_package(tracker, package, tiny_llava_loader,
                                                                          make_preference_records, tmp_path,
                                                                          monkeypatch):
    import bench.train.trackers as trackers
    from bench.train.loop import train
    from methods.dpo import DpoMethod
    from tests.test_methods import small_config

    real_find = importlib.util.find_spec
    monkeypatch.setattr(trackers.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("tensorboard", "tensorboardX", "wandb") else real_find(name, *a))
    with pytest.raises(BenchError, match=rf"log_with={tracker} needs the '{package}' package.*pip install {package}"):
        train(DpoMethod(), small_config("dpo", log_with=tracker), tiny_llava_loader, make_preference_records(2),
              tmp_path, seed=0, progress=False)
    assert not (tmp_path / "checkpoint" / "dpo" / "log.jsonl").exists()


def test_log_with_does_not_change_the_stage_fingerprint(make_preference_records):
    from bench.train.loop import stage_fingerprint
    from methods.dpo import DpoMethod
    from tests.test_methods import small_config

    records = make_preference_records(2)
    plain, tracked = small_config("dpo"), small_config("dpo", log_with="wandb")
    stage = DpoMethod().stages(plain)[0]
    assert stage_fingerprint(records, plain, stage, 0) == stage_fingerprint(records, tracked, stage, 0)
    assert stage_fingerprint(records, plain, stage, 0) != stage_fingerprint(records, small_config("dpo", lr=1.0),
                                                                           stage, 0)
