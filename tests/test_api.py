"""The Python API: the README's example runs as written; a loaded model + processor evaluates like its name;
``import bench`` stays cheap; the summary's Δ vs base equals the leaderboard's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    """Run the README's example in a fresh directory (its own synthetic world)."""
    cwd = tmp_path_factory.mktemp("api")
    (cwd / "example.py").write_text(_readme_example(), encoding="utf-8")
    env = {**os.environ, "BENCH_DATA_DIR": str(cwd / "data"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "example.py"], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=900, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    return cwd, res.stdout


def test_readme_example_runs_and_writes_base_and_dpo_runs(example_run):
    cwd, out = example_run
    assert "base POPE-random accuracy" in out and "POPE-rand acc" in out
    for label in ("base", "dpo"):
        run = cwd / "runs-api" / "tiny-llava" / label
        assert (run / "scores" / "pope.json").exists() and (run / "samples" / "pope.jsonl").exists()
    assert (cwd / "runs-api" / "tiny-llava" / "dpo" / "checkpoint" / "stages.json").exists()


def test_leaderboard_dataframe_matches_the_score_files_and_summary_delta(example_run):
    import bench
    from bench.io import read_json
    from bench.summary import summarize

    cwd, _ = example_run
    runs = cwd / "runs-api"
    df = bench.leaderboard(runs)
    assert set(df.method) == {"base", "dpo"} and len(df) == 2 * df.metric.nunique()
    for method in ("base", "dpo"):
        score = read_json(runs / "tiny-llava" / method / "scores" / "pope.json")
        sub = df[df.method == method].set_index("metric")
        for metric in sub.index:
            assert sub.loc[metric, "value"] == score["metrics"][metric]
            assert [sub.loc[metric, "ci_low"], sub.loc[metric, "ci_high"]] == score["ci"][metric]
    assert df[df.method == "base"].delta.isna().all() and df[df.method == "dpo"].delta.notna().all()
    summary = summarize([runs / "tiny-llava" / "base", runs / "tiny-llava" / "dpo"])
    dpo = next(r for r in summary["rows"] if r["method"] == "dpo")
    row = df[(df.method == "dpo") & (df.metric == dpo["metric"])].iloc[0]
    assert dpo["delta_vs_base"] == [row.delta, row.delta_low, row.delta_high]


def test_loaded_model_and_processor_evaluate_like_the_registered_name(tmp_path, monkeypatch):
    import bench
    from bench.errors import BenchError
    from bench.models.loading import model_entry
    from bench.plugins import load_plugins

    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "data"))
    load_plugins()
    entry = model_entry("tiny-llava")
    model, processor = entry.load()
    by_name = bench.evaluate(model="tiny-llava", benchmarks=["pope"], out=tmp_path / "a", limit=2)
    loaded = bench.evaluate(model=model, processor=processor, data_root=entry.default_data_root(),
                            benchmarks=["pope"], out=tmp_path / "b", limit=2)
    assert loaded["pope"]["metrics"] == by_name["pope"]["metrics"]
    run = next((tmp_path / "b").glob("*/in-memory/run.json"))
    assert (run.parent / "samples" / "pope.jsonl").exists()
    with pytest.raises(BenchError, match="processor="):
        bench.evaluate(model=model, benchmarks=["pope"], out=tmp_path / "c")


def test_import_bench_does_not_import_torch():
    code = "import sys, bench; cheap = 'torch' not in sys.modules; print(cheap, callable(bench.evaluate))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert res.stdout.split() == ["True", "True"]


def test_bench_train_is_both_the_package_and_the_api_verb():
    import bench
    import bench.train.loop  # noqa: F401  (the package is importable as before)

    assert callable(bench.train) and hasattr(bench.train, "loop")


def test_bench_leaderboard_is_both_the_package_and_the_api_verb():
    import bench
    import bench.leaderboard.render  # noqa: F401

    assert callable(bench.leaderboard) and hasattr(bench.leaderboard, "collect")
    df = bench.leaderboard(REPO / "tests" / "data" / "runs")
    assert set(df.method) == {"base", "ha-dpo", "dpo"} and df.value.notna().all()
