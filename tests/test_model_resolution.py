"""``--model`` resolution: registered names, local folders (family from config.json's model_type), hub ids
(offline and not cached: an immediate error with the download command and the env var), unsupported types."""

import json

import pytest

from bench.errors import BenchError, OfflineError


def test_offline_hub_id_not_in_cache_fails_at_once_with_download_command(tmp_path, monkeypatch):
    from bench.models.loading import model_entry

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("BENCH_MODEL_LLAVA_HF_LLAVA_1_5_7B_HF", raising=False)
    with pytest.raises(OfflineError) as err:
        model_entry("llava-hf/llava-1.5-7b-hf", revision="main")
    msg = str(err.value)
    assert "hf download llava-hf/llava-1.5-7b-hf --revision main" in msg
    assert "huggingface-cli download llava-hf/llava-1.5-7b-hf" in msg
    assert "BENCH_MODEL_LLAVA_HF_LLAVA_1_5_7B_HF" in msg and "unknown model" not in msg


def test_cli_eval_of_uncached_hub_id_exits_2_before_any_work(tmp_path, monkeypatch, capsys):
    from bench.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert main(["eval", "--model", "Qwen/Qwen2-VL-7B-Instruct", "--out", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "hf download Qwen/Qwen2-VL-7B-Instruct" in err and "BENCH_MODEL_QWEN_QWEN2_VL_7B_INSTRUCT" in err
    assert not (tmp_path / "runs").exists()


def test_env_var_points_a_registered_name_at_a_local_copy(tmp_path, monkeypatch):
    from bench.models.loading import HfModel

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava_next"}))
    monkeypatch.setenv("BENCH_MODEL_MY_NEXT", str(tmp_path))
    entry = HfModel("my-next", "someone/missing")
    assert entry.resolve() == tmp_path and entry.family.name == "llava-next" and entry.resolved_revision is None


def test_unsupported_model_type_lists_supported_families(tmp_path):
    from bench.models.loading import model_entry

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "blip-2"}))
    with pytest.raises(BenchError, match=r"unsupported model_type 'blip-2'.*llava \(llava-1.5\).*llava_next"):
        model_entry(str(tmp_path))


def test_revision_is_refused_for_a_local_folder(tmp_path):
    from bench.models.loading import model_entry

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(BenchError, match="--revision applies to hub ids"):
        model_entry(str(tmp_path), revision="abc")


def test_unknown_plain_name_is_the_registry_error():
    from bench.errors import BenchError as Err
    from bench.models.loading import model_entry

    with pytest.raises(Err, match="unknown model 'llava-8b'"):
        model_entry("llava-8b")


def test_make_tiny_cli_writes_a_loadable_folder(tmp_path):
    from bench.cli import main
    from bench.models.loading import model_entry

    assert main(["models", "make-tiny", "--family", "llava-1.5", "--out", str(tmp_path / "t")]) == 0
    entry = model_entry(str(tmp_path / "t"))
    model, processor = entry.load()
    assert entry.family.name == "llava-1.5" and type(model).__name__ == "LlavaForConditionalGeneration"
    assert json.loads((tmp_path / "t" / "bench_model.json").read_text())["family"] == "llava-1.5"
