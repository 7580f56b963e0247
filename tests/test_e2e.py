"""The walking skeleton end to end on the embedded default: train dpo, evaluate base + checkpoint on POPE,
write run records, predictions, scores and the leaderboard (reduced sizes)."""

import json

from bench.config import merge, parse_overrides
from bench.pipeline import RunConfig, run


def test_run_dpo_on_tiny_llava_writes_every_artifact(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "runs"
    cfg = merge(RunConfig(methods=["dpo"], benchmarks=["pope"], out=str(out)),
                parse_overrides(["eval.limit=3", "eval.n_boot=50", "method.dpo.train.max_steps=3"]))
    summary = run(cfg, progress=False)
    for label in ("base", "dpo"):
        d = out / "tiny-llava" / label
        rec = json.loads((d / "run.json").read_text())
        assert rec["config_hash"] and rec["versions"]["torch"] and rec["device"].startswith("cpu")
        assert rec["benchmarks"]["pope"]["protocol"] == "pope"
        assert rec["data_sha256"] and rec["run"]["config_hash"] == summary["config_hash"]
        lines = [json.loads(x) for x in (d / "predictions" / "pope.jsonl").read_text().splitlines()]
        # --limit 3 = the first 3 images with every question about them, in all three splits
        assert len({x["id"].split("/")[0] for x in lines}) == 3 and all({"id", "text"} <= set(x) for x in lines)
        score = json.loads((d / "scores" / "pope.json").read_text())
        assert score["selection"]["limit"] == 3 and score["selection"]["images"] == 3
        assert score["n"] == len(lines) == score["selection"]["items"]
        assert score["protocol"] == "pope" and "random/accuracy" in score["metrics"] and score["ci"]
    train_rec = json.loads((out / "tiny-llava" / "dpo" / "run.json").read_text())
    assert train_rec["train"]["dpo"]["steps"] == 3
    assert (out / "tiny-llava" / "dpo" / "checkpoint" / "stages.json").exists()
    md = (out / "leaderboard.md").read_text()
    assert "| tiny-llava | base |" in md and "| tiny-llava | dpo |" in md and "pope@limit3 v3" in md
    assert "[limit 3 img]" in md  # a limited run is marked and gets its own columns
    for ext in ("csv", "tex", "json", "html"):
        assert (out / f"leaderboard.{ext}").exists()


def test_rerun_reuses_cached_predictions(tmp_path, monkeypatch):
    from bench.eval.engine import run_benchmark
    from bench.models.llava import make_preprocessor
    from bench.plugins import load_plugins
    from bench.registry import BENCHMARKS, MODELS

    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "data"))
    load_plugins()
    entry = MODELS.get("tiny-llava")
    model, proc = entry.load()
    pre = make_preprocessor(proc, model.config)
    bench = BENCHMARKS.get("pope")()
    pred = tmp_path / "pope.jsonl"
    first = run_benchmark(model, pre, bench, entry.default_data_root(), pred, "ckpt-A", limit=2, progress=False)
    n = first["items"]
    assert first["generated"] == n > 2  # 2 images, all their questions
    text = pred.read_text()
    with pred.open("a") as fh:  # a killed writer left a torn line
        fh.write('{"id": "random/99", "te')
    again = run_benchmark(model, pre, bench, entry.default_data_root(), pred, "ckpt-A", limit=2, progress=False)
    assert again["cached"] == n and again["generated"] == 0 and pred.read_text() == text
    other = run_benchmark(model, pre, bench, entry.default_data_root(), pred, "ckpt-B", limit=2, progress=False)
    assert other["cached"] == 0 and other["generated"] == n  # a changed checkpoint never reuses predictions
