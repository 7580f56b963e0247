"""The run summary (`bench eval … [--json]`), the per-sample logs (`samples/<benchmark>.jsonl`) and
`bench show … --wrong`, on the embedded tiny-llava (first 60 items, a few seconds per benchmark)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.benchmark import Benchmark, EvalItem
from bench.cli import main
from bench.io import read_json, read_jsonl
from tests.conftest import requires_nltk

LIMIT = 5  # images (--limit N = the first N images with all their questions)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        d = tmp_path_factory.mktemp("data")
        mp.setenv("BENCH_DATA_DIR", str(d))
        yield d


def _eval(out: Path, benchmarks: str, *extra: str) -> int:
    return main(["eval", "--model", "tiny-llava", "--benchmarks", benchmarks, "--limit", str(LIMIT), "--out",
                 str(out), "--quiet", *extra])


@pytest.fixture(scope="module")
def pope_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert _eval(out, "pope") == 0
    return out / "tiny-llava" / "base"


def test_eval_json_summary_has_the_numbers_of_the_score_file(pope_run, data_dir, capsys):
    # a second eval of the same checkpoint reuses the cached predictions and re-scores them
    assert _eval(pope_run.parent.parent, "pope", "--json") == 0
    summary = json.loads(capsys.readouterr().out)  # stdout is exactly one JSON object
    score = read_json(pope_run / "scores" / "pope.json")
    (row,) = summary["rows"]
    assert (row["model"], row["method"], row["benchmark"], row["protocol"]) == ("tiny-llava", "base", "pope", "pope")
    assert row["metric"] in score["metrics"] and row["value"] == score["metrics"][row["metric"]]
    assert row["ci"] == score["ci"][row["metric"]] and row["n"] == score["n"] == score["selection"]["items"]
    assert score["selection"]["images"] == LIMIT
    assert row["skipped"] == score["skipped"]["count"] and row["delta_vs_base"] is None  # base has no Δ
    for name in ("run.json", "predictions/pope.jsonl", "samples/pope.jsonl", "scores/pope.json"):
        assert str(pope_run / name) in summary["files"]


def test_eval_prints_the_summary_table_and_files(pope_run, data_dir, capsys):
    assert _eval(pope_run.parent.parent, "pope") == 0
    out = capsys.readouterr().out
    score = read_json(pope_run / "scores" / "pope.json")
    value = score["metrics"]["adversarial/accuracy"]  # the first headline metric (every split is scored)
    lo, hi = score["ci"]["adversarial/accuracy"]
    line = next(x for x in out.splitlines() if x.startswith("tiny-llava/base"))
    assert "pope" in line and "POPE-adv acc ↑" in line and f"{100 * value:.1f}" in line
    assert f"[{100 * lo:.1f}, {100 * hi:.1f}]" in line
    assert "files written:" in out and str(pope_run / "samples" / "pope.jsonl") in out


def test_pope_samples_log_question_generation_answer_label_and_verdict(pope_run):
    rows = read_jsonl(pope_run / "samples" / "pope.jsonl")
    preds = {p["id"]: p["text"] for p in read_jsonl(pope_run / "predictions" / "pope.jsonl")}
    assert len(rows) == read_json(pope_run / "scores" / "pope.json")["n"] > LIMIT
    for r in rows:
        assert r["question"].startswith("Is there") and r["generation"] == preds[r["id"]]
        assert r["correct"] == (r["answer"] == r["label"]) and r["label"] in ("yes", "no")


def test_show_wrong_lists_exactly_the_mistakes_the_score_file_implies(pope_run, capsys):
    score = read_json(pope_run / "scores" / "pope.json")
    right = sum(c["TP"] + c["TN"] for c in score["confusion"].values())
    implied = score["n"] - right
    wrong_ids = {d["id"] for d in score["details"]["per_item"] if d["parsed"] != d["label"]}
    assert len(wrong_ids) == implied
    assert main(["show", str(pope_run), "--benchmark", "pope", "--wrong", "--json"]) == 0
    cap = capsys.readouterr()
    shown = [json.loads(x) for x in cap.out.splitlines()]
    assert {r["id"] for r in shown} == wrong_ids and len(shown) == implied
    assert all(r["correct"] is False for r in shown)
    assert f"# {implied} incorrect of {score['n']}" in cap.err


def test_show_without_a_log_is_one_line_error(pope_run, capsys):
    assert main(["show", str(pope_run), "--benchmark", "chair", "--wrong"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no per-sample log for benchmark 'chair'" in err and "pope" in err


@requires_nltk
def test_chair_samples_name_the_hallucinated_objects_and_count_matches_chair_s(data_dir, tmp_path, capsys):
    assert _eval(tmp_path, "chair") == 0
    run = tmp_path / "tiny-llava" / "base"
    capsys.readouterr()
    score = read_json(run / "scores" / "chair.json")
    rows = read_jsonl(run / "samples" / "chair.jsonl")
    wrong = [r for r in rows if r["correct"] is False]
    assert len(wrong) == round(score["metrics"]["chair_s"] * score["n"]) > 0
    assert all(r["hallucinated_objects"] and not set(r["hallucinated_objects"]) & set(r["gt_objects"]) for r in wrong)
    assert main(["show", str(run), "--benchmark", "chair", "--wrong"]) == 0
    out = capsys.readouterr().out
    assert f"# {len(wrong)} incorrect of {len(rows)}" in out and "hallucinated_objects=" in out


class _Claims(Benchmark):
    """A protocol whose details are per claim (``rec/j``) while one generation answers a whole record."""

    name = "test-claims"
    benchmark = "test"

    def items(self, data_root):
        return [EvalItem("r1", "img.png", "List the claims.")]

    def score(self, predictions, data_root, **kw):
        return {"metrics": {}, "details": {"summary": {"n": 2},
                                           "per_claim": [{"id": "r1/0", "ok": True}, {"id": "r1/1", "ok": False}]}}


def test_sample_rows_come_from_details_joined_through_the_parent_item():
    bench = _Claims()
    preds = [{"id": "r1", "text": "claim 0: yes; claim 1: no"}]
    rows = bench.sample_rows(bench.score(preds, None), preds, bench.items(None))
    assert [r["id"] for r in rows] == ["r1/0", "r1/1"]
    assert all(r["question"] == "List the claims." and r["generation"] == preds[0]["text"] for r in rows)
    assert [r["correct"] for r in rows] == [None, None]  # no declared verdict: not guessed
    assert rows[1]["detail"] == {"id": "r1/1", "ok": False}


def test_run_json_summary_has_base_and_method_with_the_leaderboards_paired_difference(data_dir, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["run", "--methods", "dpo", "--benchmarks", "pope", "--out", str(out), "--json", "--quiet",
                 "eval.limit=3", "eval.n_boot=50", "method.dpo.train.max_steps=2"]) == 0
    summary = json.loads(capsys.readouterr().out)  # stdout is exactly one JSON object
    rows = {r["method"]: r for r in summary["rows"]}
    assert set(rows) == {"base", "dpo"} and rows["base"]["delta_vs_base"] is None
    for method, row in rows.items():
        score = read_json(out / "tiny-llava" / method / "scores" / "pope.json")
        assert row["value"] == score["metrics"][row["metric"]] and row["ci"] == score["ci"][row["metric"]]
    board = read_json(out / "leaderboard.json")
    dpo = next(r for r in board["rows"] if r["method"] == "dpo")
    col = f"pope@limit3:{rows['dpo']['metric']}"  # a limited run has its own column
    assert rows["dpo"]["delta_vs_base"] == dpo["cells"][col]["delta_vs_base"]
    assert str(out / "leaderboard.html") in summary["files"] and str(out / "leaderboard.md") in summary["files"]
