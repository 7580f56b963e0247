"""Everything a run needs is checked before any model is loaded; ordinary user and environment errors are one
line with exit 2; an output folder trained from other data/config is never silently reused or relabelled."""

import errno
import json
import shutil
import zipfile
from pathlib import Path

import pytest

import bench.cli as cli
from bench.cli import main
from bench.errors import BenchError, DataError


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert errors, err
    return errors[-1]


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if a model is loaded (the preflight must stop before)."""
    from bench.models import TinyLlava

    def boom(*a, **k):
        raise AssertionError("a model was loaded before the preflight finished")

    monkeypatch.setattr(TinyLlava, "load", boom)


# ----------------------------------------------------------------------------------------------- preflight
def test_preflight_lists_every_missing_resource_before_loading_a_model(synthetic_root, tmp_path, monkeypatch,
                                                                       capsys, no_model_load):
    import nltk

    from bench import nltk_data

    world = tmp_path / "world"
    shutil.copytree(synthetic_root, world)
    (world / "pope" / "v3" / "coco_pope_adversarial.json").unlink()
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("BENCH_NLTK_DATA", str(tmp_path / "no-nltk"))
    monkeypatch.delenv("NLTK_DATA", raising=False)
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nowhere")])
    monkeypatch.setattr(nltk_data, "PACKAGED", tmp_path / "no-packaged-copy")
    import metrics.chair_words as cw

    monkeypatch.setattr(cw, "_NLTK_OK", set())
    rc = main(["run", "--methods", "dpo", "--benchmarks", "pope,chair,shr", "--data-root", str(world),
               "--out", str(tmp_path / "runs"), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "nothing was started" in err and "Traceback" not in err
    assert "coco_pope_adversarial.json" in err  # a data file
    assert "punkt_tab" in err and "CHAIR" in err  # NLTK data, with how to get it
    assert "OPENAI_API_KEY" in err  # the judge's key
    assert not (tmp_path / "runs" / "tiny-llava" / "base" / "predictions").exists()


def test_an_uncached_hub_model_fails_at_once_with_the_download_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("BENCH_MODEL_LLAVA_7B", raising=False)
    assert main(["eval", "--model", "llava-7b", "--benchmarks", "pope", "--out", str(tmp_path / "o"),
                 "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "huggingface-cli download llava-hf/llava-1.5-7b-hf" in err and "BENCH_MODEL_LLAVA_7B" in err


def test_out_pointing_at_a_file_is_reported_before_any_work(synthetic_root, tmp_path, capsys, no_model_load):
    target = tmp_path / "a-file"
    target.write_text("x")
    assert main(["eval", "--benchmarks", "pope", "--data-root", str(synthetic_root), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert "nothing was started" in err and f"{target}: is a file" in err


# ------------------------------------------------------------------------------------------- one config
def test_eval_rejects_an_override_outside_eval_with_a_did_you_mean(synthetic_root, capsys, no_model_load):
    assert main(["eval", "--benchmarks", "pope", "--data-root", str(synthetic_root), "limit=3"]) == 2
    line = _one_line_error(capsys)
    assert "'limit'" in line and "eval.limit" in line


def test_eval_rejects_unknown_keys_and_bad_values(synthetic_root, capsys, no_model_load):
    for override, words in (("foo=1", "'foo'"), ("eval.n_boot=0", "n_boot"), ("eval.batch_size=0", "batch_size"),
                            ("eval.dtype=float8", "dtype")):
        assert main(["eval", "--benchmarks", "pope", "--data-root", str(synthetic_root), override]) == 2, override
        assert words in _one_line_error(capsys)


@pytest.mark.parametrize("argv", [
    ["eval", "--limit", "0"], ["eval", "--limit", "-5"], ["eval", "--batch-size", "0"],
    ["eval", "--batch-size", "-2"], ["train", "--method", "dpo", "--max-steps", "0"],
    ["train", "--method", "dpo", "--max-steps", "-3"], ["score", "x", "--benchmarks", "pope", "--data-root", "y",
                                                       "--limit", "0"],
])
def test_numeric_options_are_validated_when_parsed(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and "must be >=" in capsys.readouterr().err


@pytest.mark.parametrize("override,words", [("train.batch_size=0", "batch_size"), ("train.lr=-1", "lr"),
                                            ("train.lr=nan", "lr"), ("nosuch=1", "nosuch")])
def test_train_config_values_are_validated_before_any_work(override, words, synthetic_root, tmp_path, capsys,
                                                           no_model_load):
    assert main(["train", "--method", "dpo", "--data-root", str(synthetic_root), "--out", str(tmp_path),
                 override]) == 2
    assert words in _one_line_error(capsys)


def test_run_overrides_for_an_unknown_or_unselected_method_fail_before_any_work(synthetic_root, tmp_path, capsys,
                                                                                no_model_load):
    assert main(["run", "--methods", "dpo", "--benchmarks", "pope", "--data-root", str(synthetic_root),
                 "--out", str(tmp_path), "method.nosuch.beta=1"]) == 2
    assert "unknown method 'nosuch'" in _one_line_error(capsys)
    assert main(["run", "--methods", "dpo", "--benchmarks", "pope", "--data-root", str(synthetic_root),
                 "--out", str(tmp_path), "method.ha-dpo.beta=1"]) == 2
    assert "not run" in _one_line_error(capsys)


# ------------------------------------------------------------------------------------ one-line errors
def test_environment_errors_are_one_line_with_exit_2(synthetic_root, tmp_path, capsys, monkeypatch):
    assert main(["eval", "--device", "cuda", "--benchmarks", "pope", "--data-root", str(synthetic_root)]) == 2
    assert "CUDA is not available" in _one_line_error(capsys)
    folder = tmp_path / "cfg"
    folder.mkdir()
    assert main(["run", "--config", str(folder)]) == 2
    assert "not a folder" in _one_line_error(capsys)
    assert main(["score", str(tmp_path / "nonexistent"), "--benchmarks", "pope", "--data-root",
                 str(synthetic_root)]) == 2
    assert "no such run folder" in _one_line_error(capsys)
    assert not (tmp_path / "nonexistent").exists()

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "runs" / "x.json"))

    monkeypatch.setattr(cli, "cmd_list", full_disk)  # the parser binds the verb when it is built
    assert main(["list"]) == 2
    line = _one_line_error(capsys)
    assert "No space left on device" in line and "free some disk space" in line


def test_bad_prediction_and_training_files_name_the_file_and_line(tmp_path):
    from bench.data.preference import PreferenceRecord
    from bench.predictions import read_predictions

    bad = tmp_path / "p.jsonl"
    bad.write_bytes(b'{"id": "a", "text": "Yes"}\n{"id": "b", "text": "\xff\xfe"}\n')
    with pytest.raises(DataError, match=r"p\.jsonl:2.*UTF-8"):
        read_predictions(bad)
    bad.write_text('{"id": "a", "text": "Yes"}\n{"id": "b"}\n')
    with pytest.raises(DataError, match=r"p\.jsonl:2 field 'text'"):
        read_predictions(bad)
    bad.write_text('{"id": "a", "text": 5}\n')
    with pytest.raises(DataError, match=r"p\.jsonl:1 field 'text'.*string"):
        read_predictions(bad)
    with pytest.raises(DataError, match="field 'extra'"):
        PreferenceRecord.from_json({"id": 1, "image": "x.png", "question": "q", "chosen": "a", "rejected": "b",
                                    "extra": "notadict"}, path="t.jsonl", line=3)


# ------------------------------------------------------------------------------------------- training
def test_retraining_a_finished_folder_with_other_config_refuses_and_force_retrains(synthetic_root, tmp_path, capsys):
    args = ["train", "--method", "dpo", "--data-root", str(synthetic_root), "--out", str(tmp_path), "--quiet",
            "--max-steps", "1"]
    assert main([*args, "--resume"]) == 0
    run_json = tmp_path / "tiny-llava" / "dpo" / "run.json"
    adapter = tmp_path / "tiny-llava" / "dpo" / "checkpoint" / "dpo" / "adapter" / "adapter_model.safetensors"
    before_run, before_adapter = run_json.read_text(), adapter.read_bytes()
    capsys.readouterr()
    assert main([*args, "--resume", "train.lr=1e-2"]) == 2
    line = _one_line_error(capsys)
    assert "train.lr" in line and "--force" in line
    assert run_json.read_text() == before_run and adapter.read_bytes() == before_adapter  # nothing relabelled
    assert main([*args, "--resume"]) == 0  # the identical run resumes ("already done")
    assert json.loads(run_json.read_text())["train"]["dpo"] == {"resumed": "already done"}
    assert main([*args, "--resume", "--force", "train.lr=1e-2"]) == 0
    rec = json.loads(run_json.read_text())
    assert rec["config"]["train"]["lr"] == 1e-2 and rec["train"]["dpo"]["steps"] == 1


def test_train_verb_works_for_a_two_stage_method_with_max_steps(synthetic_root, tmp_path):
    assert main(["train", "--method", "povid", "--data-root", str(synthetic_root), "--out", str(tmp_path),
                 "--quiet", "--max-steps", "1"]) == 0
    rec = json.loads((tmp_path / "tiny-llava" / "povid" / "run.json").read_text())
    assert rec["config"]["stage1"]["max_steps"] == 1 and rec["config"]["stage2"]["max_steps"] == 1
    assert set(rec["train"]) == {"stage1", "stage2"}


# ------------------------------------------------------------------------------------------ data paths
def test_paths_built_from_data_are_confined_to_their_root(tmp_path):
    from bench.io import confined_path

    assert confined_path(tmp_path, "images/a.png") == tmp_path.resolve() / "images/a.png"
    for bad in ("../../../../x", "/etc/passwd", "a/../../x", ""):
        with pytest.raises(BenchError):
            confined_path(tmp_path, bad)


def test_opa_conversion_refuses_an_image_id_that_leaves_the_data_root(tmp_path):
    import base64
    import io

    from PIL import Image

    from bench.data import fetch as F

    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    row = {"image_id": "../../../../escaped", "image_bytes": base64.b64encode(buf.getvalue()).decode(),
           "AI_json_report": {"a": 1}, "original_generate_response": "A cat.", "AI_pseudo_response": "A dog.",
           "standard_response": "A dog.", "queries": "Describe."}
    src = tmp_path / "opa.json"
    src.write_text(json.dumps([row]))
    for image_id in ("../../../../escaped", "/abs/path"):
        src.write_text(json.dumps([{**row, "image_id": image_id}]))
        with pytest.raises(BenchError, match="image_id"):
            F.fetch("opa-dpo-data", tmp_path / "root", options={"from": str(src)}, progress=False)
    assert not (tmp_path / "escaped.png").exists() and not list(tmp_path.glob("**/escaped*"))


def test_archive_members_with_overlong_names_are_skipped_not_fatal(tmp_path):
    from bench.data import download as D

    archive = tmp_path / "root" / "imgs.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.jpg", b"jpeg")
        zf.writestr("x" * 300 + ".jpg", b"jpeg")
        zf.writestr("../../evil.jpg", b"jpeg")
    ctx = D.FetchContext(tmp_path / "root", "t", D.Manifest(tmp_path / "root"), offline=True, progress=False,
                         options={}, command_name="t")
    D.extract_archive_flat("imgs.zip", "images")(ctx)
    names = sorted(p.name for p in (tmp_path / "root" / "images").iterdir() if not p.name.startswith("."))
    assert "ok.jpg" in names and "evil.jpg" in names and not any(len(n) > 240 for n in names)
    assert not (tmp_path / "evil.jpg").exists()


def test_a_failed_hub_download_leaves_no_lock_files_in_staging(tmp_path):
    from bench.data.download import tidy_staging

    hf = tmp_path / ".staging" / "org--repo" / ".cache" / "huggingface"
    (hf / "download").mkdir(parents=True)
    for f in (hf / "CACHEDIR.TAG", hf / ".gitignore", hf / "download" / "x.lock", hf / "download" / "x.metadata"):
        f.write_text("")
    tidy_staging(tmp_path)
    assert not (tmp_path / ".staging").exists()
    (hf / "download").mkdir(parents=True)
    (hf / "download" / "big.incomplete").write_text("partial")
    tidy_staging(tmp_path)
    assert (hf / "download" / "big.incomplete").exists()  # a partial download is kept for resuming


# -------------------------------------------------------------------------------------------- console
def test_skipped_items_are_reported_on_the_console_and_quiet_is_quiet(synthetic_root, tmp_path, capsys):
    world = tmp_path / "world"
    shutil.copytree(synthetic_root, world)
    first = json.loads((world / "pope" / "v3" / "coco_pope_random.json").read_text().splitlines()[0])["image"]
    (world / "coco" / "val2014" / first).unlink()
    assert main(["eval", "--benchmarks", "pope", "--data-root", str(world), "--out", str(tmp_path / "runs"),
                 "--limit", "2", "--quiet", "eval.n_boot=10"]) == 0
    err = capsys.readouterr().err
    assert "item(s) skipped" in err and "image not found" in err
    assert "Loading weights" not in err and "%|" not in err
