import json
import os

import pytest

from bench.errors import DataError
from bench.io import append_jsonl, atomic_write_json, read_jsonl, truncate_torn_tail
from bench.records import new_record, update_record
from bench.pipeline import RunConfig


def test_atomic_write_leaves_old_file_when_serialisation_fails(tmp_path):
    path = tmp_path / "scores.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["scores.json"]  # no temp file left behind


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "preds.jsonl"
    path.write_text('{"id": "1", "text": "yes"}\n{"id": "2", "text": \n{"id": "3"}\n')
    with pytest.raises(DataError) as err:
        read_jsonl(path)
    assert f"{path}:2" in str(err.value) and "malformed JSON" in str(err.value)


def test_torn_last_line_is_repaired(tmp_path):
    path = tmp_path / "p.jsonl"
    append_jsonl(path, [{"id": "1"}, {"id": "2"}])
    with path.open("a") as fh:
        fh.write('{"id": "3", "te')
    assert [r["id"] for r in read_jsonl(path, repair=True)] == ["1", "2"]
    truncate_torn_tail(path)
    assert path.read_text().count("\n") == 2 and path.read_text().endswith("\n")


def test_run_record_holds_config_hash_versions_git_and_device(tmp_path):
    rec = new_record("eval", "tiny-llava", "base", RunConfig(), 0, "cpu")
    for key in ("config", "config_hash", "seed", "git", "versions", "device", "started", "wall_s", "data_sha256"):
        assert key in rec
    for pkg in ("python", "torch", "transformers", "peft", "trl", "accelerate"):
        assert pkg in rec["versions"]
    assert rec["device"].startswith("cpu")
    path = tmp_path / "run.json"
    atomic_write_json(path, rec)
    update_record(path, {"wall_s": {"eval/pope": 1.5}, "benchmarks": {"pope": {"version": "3"}}})
    update_record(path, {"wall_s": {"eval/chair": 2.0}})
    out = json.loads(path.read_text())
    assert out["wall_s"] == {"eval/pope": 1.5, "eval/chair": 2.0}
    assert out["config_hash"] == rec["config_hash"]


def _stub_train_method(monkeypatch, tmp_path):
    """train_method with the method, the model and the loop stubbed out: only its record writing runs."""
    import dataclasses
    from types import SimpleNamespace

    import bench.pipeline as pipeline

    @dataclasses.dataclass
    class Cfg:
        beta: float = 0.1

    data = tmp_path / "train.jsonl"
    data.write_text("{}\n")
    method = SimpleNamespace(default_data=lambda root: data, load_records=lambda path, cfg: [1, 2, 3])
    monkeypatch.setattr(pipeline, "method_config", lambda name, entry, overrides=None: (method, Cfg()))
    monkeypatch.setattr(pipeline, "train", lambda *a, **k: {"stage": {"steps": 2}})  # the loop's, as bound there
    monkeypatch.setattr(pipeline, "run_identity", lambda *a, **k: {})
    entry = SimpleNamespace(name="tiny-llava")
    out = tmp_path / "out"
    return lambda: pipeline.train_method("dpo", entry, None, out, None, tmp_path, 0, "cpu", progress=False), out


def test_train_method_writes_run_record_on_the_main_process(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    call, out = _stub_train_method(monkeypatch, tmp_path)
    rec = call()
    on_disk = json.loads((out / "run.json").read_text())
    assert on_disk["train"] == {"stage": {"steps": 2}} and "train" in on_disk["wall_s"]
    assert on_disk["data"]["records"] == 3 and rec["train"] == on_disk["train"]


def test_train_method_writes_no_run_record_on_other_ranks(tmp_path, monkeypatch):
    from bench.runtime import is_main_process

    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()
    call, out = _stub_train_method(monkeypatch, tmp_path)
    rec = call()  # under `accelerate launch` only rank 0 writes run.json
    assert not (out / "run.json").exists()
    assert rec["train"] == {"stage": {"steps": 2}} and "train" in rec["wall_s"] and rec["kind"] == "train"
    monkeypatch.delenv("RANK")
    assert is_main_process()
