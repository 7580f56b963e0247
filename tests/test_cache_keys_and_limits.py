"""A cache is reused only when what determines its content is unchanged (weights by content, adapters,
dtype, image bytes), and ``--limit N`` selects N images to score without ever deleting stored predictions."""

import json
import shutil
from pathlib import Path

import pytest

from bench.cli import main


def _eval(tmp_path, world, *args, out="runs", model="tiny-llava"):
    return main(["eval", "--model", str(model), "--benchmarks", "pope", "--data-root", str(world),
                 "--out", str(tmp_path / out), "--quiet", "eval.n_boot=20", *args])


def _record(run_dir):
    return json.loads((run_dir / "run.json").read_text())


def _lines(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


@pytest.fixture
def world(synthetic_root, tmp_path):
    """A private copy of the small synthetic world (tests here change its images)."""
    dst = tmp_path / "world"
    shutil.copytree(synthetic_root, dst)
    return dst


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    """The sha256 cache lives under BENCH_DATA_DIR's parent: keep it per test."""
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "bench-data"))


def _copy_tiny(dst: Path, perturb: bool = False) -> Path:
    from safetensors.torch import load_file, save_file

    from bench.models.tiny_llava import ASSET_DIR

    shutil.copytree(ASSET_DIR, dst)
    if perturb:
        weights = load_file(str(dst / "model.safetensors"))
        name = next(k for k in weights if k.endswith("lm_head.weight"))
        weights[name] = weights[name].flip(0).contiguous()  # a different model under the same folder name
        save_file(weights, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def test_two_checkpoints_with_the_same_folder_name_never_share_predictions(tmp_path, world, cache_home):
    a = _copy_tiny(tmp_path / "a" / "checkpoint-1000")
    b = _copy_tiny(tmp_path / "b" / "checkpoint-1000", perturb=True)
    assert _eval(tmp_path, world, "--limit", "2", model=a) == 0
    run_dir = tmp_path / "runs" / "checkpoint-1000" / "base"
    first = _record(run_dir)
    assert _eval(tmp_path, world, "--limit", "2", model=b) == 0
    second = _record(run_dir)
    assert first["checkpoint_fingerprint"] != second["checkpoint_fingerprint"]
    gen = second["benchmarks"]["pope"]["generation"]
    assert gen["cached"] == 0 and gen["generated"] == gen["items"] > 0  # nothing reused from the other model
    # the other model's lines are kept aside, never reused and never lost
    assert (run_dir / "predictions" / "pope.jsonl.stale").exists()


def test_a_model_retrained_in_place_gets_a_new_fingerprint(tmp_path, cache_home):
    from bench.fingerprint import folder_fingerprint

    folder = _copy_tiny(tmp_path / "ckpt")
    before = folder_fingerprint(folder)
    assert folder_fingerprint(folder) == before  # stable (and served from the size+mtime hash cache)
    shutil.rmtree(folder)
    _copy_tiny(folder, perturb=True)
    assert folder_fingerprint(folder) != before


def test_fingerprint_ignores_names_and_covers_dtype_device_and_adapter(tmp_path, cache_home):
    from bench.fingerprint import checkpoint_fingerprint, folder_fingerprint

    a = _copy_tiny(tmp_path / "x" / "model")
    b = _copy_tiny(tmp_path / "y" / "another-name")
    wa, wb = "sha256:" + folder_fingerprint(a), "sha256:" + folder_fingerprint(b)
    assert wa == wb  # same bytes, different names and paths: same model
    base = checkpoint_fingerprint(wa, None, "float32", "cpu", "transformers/sdpa")
    assert base == checkpoint_fingerprint(wb, None, "float32", "cpu", "transformers/sdpa")
    assert base != checkpoint_fingerprint(wa, None, "bfloat16", "cpu", "transformers/sdpa")
    assert base != checkpoint_fingerprint(wa, None, "float32", "cuda:0", "transformers/sdpa")
    assert base != checkpoint_fingerprint(wa, None, "float32", "cpu", "transformers/eager")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"one")
    with_adapter = checkpoint_fingerprint(wa, adapter, "float32", "cpu", "transformers/sdpa")
    (adapter / "adapter_model.safetensors").write_bytes(b"two")
    assert with_adapter != base
    assert with_adapter != checkpoint_fingerprint(wa, adapter, "float32", "cpu", "transformers/sdpa")


def test_a_hub_model_is_keyed_by_its_resolved_commit(monkeypatch):
    import bench.fingerprint as F
    import bench.models.loading as L

    commits = iter(["a" * 40, "b" * 40])
    monkeypatch.setattr(L, "resolve_hub", lambda repo, revision=None, env_var=None: (Path("snap"), next(commits)))
    first = L.HfModel("llava-7b", "llava-hf/llava-1.5-7b-hf").weights_source()
    assert first == {"hub": "llava-hf/llava-1.5-7b-hf", "revision": None, "commit": "a" * 40}
    assert F.weights_fingerprint(first) == "hub:llava-hf/llava-1.5-7b-hf@" + "a" * 40
    second = L.HfModel("llava-7b", "llava-hf/llava-1.5-7b-hf").weights_source()  # a new revision in the cache
    assert F.weights_fingerprint(second) != F.weights_fingerprint(first)


def test_an_image_replaced_under_the_same_name_is_generated_again(tmp_path, world, cache_home):
    assert _eval(tmp_path, world, "--limit", "1") == 0
    run_dir = tmp_path / "runs" / "tiny-llava" / "base"
    n = _record(run_dir)["benchmarks"]["pope"]["generation"]["items"]
    assert _eval(tmp_path, world, "--limit", "1") == 0
    assert _record(run_dir)["benchmarks"]["pope"]["generation"]["cached"] == n  # unchanged: reused
    first_image = _lines(world / "pope" / "v3" / "coco_pope_random.json")[0]["image"]
    images = sorted((world / "coco" / "val2014").iterdir())
    target = world / "coco" / "val2014" / first_image
    other = next(p for p in images if p.name != first_image)
    shutil.copyfile(other, target)  # new bytes, same file name
    assert _eval(tmp_path, world, "--limit", "1") == 0
    gen = _record(run_dir)["benchmarks"]["pope"]["generation"]
    assert gen["cached"] == 0 and gen["generated"] == n


def test_dtype_is_recorded_and_part_of_the_cache_key(tmp_path, world, cache_home):
    assert _eval(tmp_path, world, "--limit", "1", "--dtype", "float32") == 0
    run_dir = tmp_path / "runs" / "tiny-llava" / "base"
    fp32 = _record(run_dir)
    assert fp32["dtype"] == "float32" and fp32["eval"]["dtype"] == "float32"
    assert _eval(tmp_path, world, "--limit", "1", "--dtype", "bfloat16") == 0
    bf16 = _record(run_dir)
    assert bf16["dtype"] == "bfloat16" and bf16["checkpoint_fingerprint"] != fp32["checkpoint_fingerprint"]
    assert bf16["benchmarks"]["pope"]["generation"]["cached"] == 0


def test_a_smaller_limit_never_deletes_stored_predictions(tmp_path, world, cache_home):
    assert _eval(tmp_path, world, "--limit", "3") == 0
    pred = tmp_path / "runs" / "tiny-llava" / "base" / "predictions" / "pope.jsonl"
    full = _lines(pred)
    assert _eval(tmp_path, world, "--limit", "1") == 0
    assert _lines(pred) == full  # the file only grows
    score = json.loads((pred.parent.parent / "scores" / "pope.json").read_text())
    assert score["selection"]["limit"] == 1 and score["selection"]["images"] == 1
    assert score["n"] == score["selection"]["items"] < len(full)
    assert score["skipped"]["count"] == 0  # items outside the limit are not "missing"
    # every split is kept: the limit is by image, not by question file
    assert {i["id"].split("/")[0] for i in score["details"]["per_item"]} == {"random", "popular", "adversarial"}
    rec = _record(pred.parent.parent)
    assert rec["eval"]["limit"] == 1 and rec["benchmarks"]["pope"]["selection"]["limit"] == 1


def test_duplicate_prediction_lines_follow_one_rule_everywhere(tmp_path, world, cache_home):
    from bench.predictions import read_predictions

    assert _eval(tmp_path, world, "--limit", "1") == 0
    run_dir = tmp_path / "runs" / "tiny-llava" / "base"
    pred = run_dir / "predictions" / "pope.jsonl"
    first = _lines(pred)[0]
    flipped = {**first, "text": "No" if first["text"].lower().startswith("yes") else "Yes"}
    with pred.open("a") as fh:
        fh.write(json.dumps(flipped) + "\n")
    assert read_predictions(pred)[0][first["id"]]["text"] == flipped["text"]  # the last line wins
    assert main(["score", str(run_dir), "--benchmarks", "pope", "--data-root", str(world)]) == 0
    scored = {i["id"]: i["parsed"] for i in json.loads((run_dir / "scores" / "pope.json").read_text())[
        "details"]["per_item"]}
    assert scored[first["id"]] == flipped["text"].lower()
    assert _eval(tmp_path, world, "--limit", "1") == 0  # the engine applies the same rule (and keeps the line)
    assert {r["id"]: r["text"] for r in _lines(pred)}[first["id"]] == flipped["text"]


def test_limited_and_full_scores_never_share_a_leaderboard_column(tmp_path, world, cache_home):
    from bench.leaderboard.collect import collect

    assert _eval(tmp_path, world, "--limit", "1", "--label", "small") == 0
    assert _eval(tmp_path, world, "--label", "full") == 0
    table = collect(tmp_path / "runs")
    protocols = {c.protocol for c in table.columns}
    assert protocols == {"pope", "pope@limit1"}
    assert all("[limit 1 img]" in c.label for c in table.columns if c.protocol == "pope@limit1")
    by_method = {r.method: set(k.split(":")[0] for k in r.cells) for r in table.rows}
    assert by_method == {"small": {"pope@limit1"}, "full": {"pope"}}


def test_a_score_file_edited_by_hand_or_relabelled_is_refused(tmp_path, world, cache_home):
    from bench.errors import DataError
    from bench.leaderboard.collect import collect

    assert _eval(tmp_path, world, "--limit", "1") == 0
    path = tmp_path / "runs" / "tiny-llava" / "base" / "scores" / "pope.json"
    original = path.read_text()
    collect(tmp_path / "runs")  # untouched: accepted
    score = json.loads(original)
    score["metrics"]["random/accuracy"] = 17.5
    path.write_text(json.dumps(score))
    with pytest.raises(DataError, match="integrity"):
        collect(tmp_path / "runs")
    score = json.loads(original)
    score["protocol"] = "pope-opera"
    path.write_text(json.dumps(score))
    with pytest.raises(DataError, match="integrity"):
        collect(tmp_path / "runs")


def test_output_files_follow_the_users_umask(tmp_path):
    import os

    from bench.io import atomic_write_json

    old = os.umask(0o022)
    try:
        path = atomic_write_json(tmp_path / "shared" / "x.json", {"a": 1})
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644


def test_the_same_adapter_in_two_output_folders_keys_the_same_predictions(tmp_path, cache_home):
    """A trained checkpoint's reference-cache files (``ref_logps.*``, which differ between output folders) and run
    state are not model files: identical adapter weights give one fingerprint; other weights another."""
    from bench.fingerprint import checkpoint_fingerprint

    def checkpoint(name, weights=b"lora", data_sha="a" * 64):
        stage = tmp_path / name / "checkpoint" / "dpo"
        (stage / "adapter").mkdir(parents=True)
        (stage / "adapter" / "adapter_model.safetensors").write_bytes(weights)
        (stage / "adapter" / "adapter_config.json").write_text('{"r": 8}')
        (stage / "ref_logps.json").write_text(json.dumps({"fingerprint": data_sha[:16], "entries": 3}))
        (stage / "ref_logps.safetensors").write_bytes(data_sha.encode())
        (stage / "state.pt").write_bytes(name.encode())
        (stage.parent / "stages.json").write_text('{"method": "dpo", "stages": [{"name": "dpo", "dir": "dpo"}]}')
        return stage.parent

    key = lambda folder: checkpoint_fingerprint("sha256:base", folder, "float32", "cpu", "transformers/sdpa")
    first = key(checkpoint("run1"))
    assert key(checkpoint("run2", data_sha="b" * 64)) == first
    assert key(checkpoint("run3", weights=b"other lora")) != first
