"""LLaVA-Bench (in-the-wild): the reviewer prompt and system message, ``parse_score`` ([-1, -1] averaged in,
counted), relative scores per category, bad input reported with ids, recomputation, preflight, the
annotation reviewer and the synthetic world."""

import json
import shutil

import numpy as np
import pytest

from bench.io import sha256_file
from bench.parity import run_parity
from metrics.llava_bench import (RULE_FILE, SYSTEM, LlavaBenchAnnotationProtocol, LlavaBenchProtocol, build_prompt,
                                 parse_prompt, parse_score, reference_summary, rule)
from tests.conftest import TEST_DATA

PARITY = TEST_DATA / "shared" / "parity"
CATS = ["conv", "detail", "complex"]


class StubJudge:
    """Answers by question text: ``question <id>`` → ``replies[id]``."""

    def __init__(self, replies, judge_id="stub:judge"):
        self.replies, self.judge_id, self.calls = replies, judge_id, 0

    def __call__(self, prompt, attempt=0):
        self.calls += 1
        return self.replies[parse_prompt(prompt)[1].rsplit(" ", 1)[1]]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_root(tmp_path, n=9, images=True):
    folder = tmp_path / "llava-bench"
    (folder / "images").mkdir(parents=True)
    write_jsonl(folder / "questions.jsonl", [{"question_id": i, "image": f"{i // 3}.jpg", "text": f"question {i}",
                                              "category": CATS[i % 3]} for i in range(n)])
    write_jsonl(folder / "context.jsonl", [{"id": k, "image": f"{k}.jpg", "caption": ["A cup.", "A dog."]}
                                           for k in range((n + 2) // 3)])
    write_jsonl(folder / "answers_gpt4.jsonl", [{"question_id": i, "text": f"reference {i}"} for i in range(n)])
    if images:
        for k in range((n + 2) // 3):
            (folder / "images" / f"{k}.jpg").write_bytes(b"x")
    return tmp_path


def preds(n):
    return [{"id": str(i), "text": f"answer {i}"} for i in range(n)]


# ------------------------------------------------------------------------------------------ prompt / parser
def test_rule_file_is_the_reference_copy_and_prompt_lays_out_the_blocks():
    assert sha256_file(RULE_FILE).startswith("dd7345a44ce9f7a2")
    p = build_prompt(["A cup.", "A dog."], "What is it?", "ref", "mine", "detail")
    assert p.startswith("[Context]\nA cup.\nA dog.\n\n[Question]\nWhat is it?\n\n[Assistant 1]\nref\n\n"
                        "[End of Assistant 1]\n\n[Assistant 2]\nmine\n\n[End of Assistant 2]\n\n[System]\n")
    assert p.endswith(rule("detail")["prompt"] + "\n\n")
    assert parse_prompt(p) == ("A cup.\nA dog.", "What is it?", "ref", "mine")


@pytest.mark.parametrize("review,expected", [
    ("8 7\nBecause.", ([8.0, 7.0], True)),
    ("8.5 6", ([8.5, 6.0], True)),
    ("8,7", ([8.0, 7.0], True)),
    ("10, 3\n\nx", ([-1.0, -1.0], False)),  # comma + space → three pieces, as in the reference
    ("Score: 8 7", ([-1.0, -1.0], False)),
    ("7 5 6", ([-1.0, -1.0], False)),
    ("ten 5", ([-1.0, -1.0], False)),
    ("", ([-1.0, -1.0], False)),
])
def test_parse_score_follows_the_reference(review, expected):
    assert parse_score(review) == expected


def test_reference_summary_rounds_means_to_three_decimals_before_the_ratio():
    s = reference_summary({"conv": [[8, 6], [-1, -1], [7, 7]], "detail": [[9, 9]]})
    s0, s1 = round((8 - 1 + 7) / 3, 3), round((6 - 1 + 7) / 3, 3)
    assert s["conv"] == {"relative": round(s1 / s0 * 100, 1), "reference_score": round(s0 * 10, 1),
                         "model_score": round(s1 * 10, 1)}
    assert s["detail"]["relative"] == 100.0 and set(s) == {"all", "conv", "detail"}


# ------------------------------------------------------------------------------------------ scoring
def test_relative_scores_per_category_and_overall(tmp_path):
    root = make_root(tmp_path)
    pairs = [(8, 6), (9, 9), (7, 2), (10, 5), (6, 6), (8, 8), (4, 2), (9, 7), (6, 3)]
    judge = StubJudge({str(i): f"{a} {b}\nexplanation" for i, (a, b) in enumerate(pairs)})
    s = LlavaBenchProtocol().score(preds(9), root, judge=judge, n_boot=50)
    m = s["metrics"]
    a = np.array(pairs, dtype=float)
    assert m["relative"] == pytest.approx(a[:, 1].mean() / a[:, 0].mean() * 100)
    assert m["model_score"] == pytest.approx(a[:, 1].mean() * 10)
    conv = a[0::3]
    assert m["conv/relative"] == pytest.approx(conv[:, 1].mean() / conv[:, 0].mean() * 100)
    assert m["conv/reference_score"] == pytest.approx(conv[:, 0].mean() * 10)
    assert s["n"] == 9 and judge.calls == 9 and s["ci"]["relative"][0] <= m["relative"] <= s["ci"]["relative"][1]
    units, stat = LlavaBenchProtocol().paired_units(s)
    assert set(units) == {"0.jpg", "1.jpg", "2.jpg"} and stat(np.sum(list(units.values()), axis=0)) == pytest.approx(m)
    assert s["judge"]["model"] == "gpt-4-0314"


def test_unparseable_replies_are_averaged_in_as_minus_one_and_reported_with_ids(tmp_path):
    root = make_root(tmp_path, n=3)
    judge = StubJudge({"0": "8 6", "1": "Score: 9 9", "2": "7 7"})
    s = LlavaBenchProtocol().score(preds(3), root, judge=judge, n_boot=0)
    assert s["metrics"]["relative"] == pytest.approx((6 - 1 + 7) / (8 - 1 + 7) * 100)
    assert s["parse_failures"] == {"count": 1, "items": {"1": "Score: 9 9"}}
    assert "averaged in" in s["skipped"]["reasons"]["1"] and s["skipped"]["kept_in_metrics"] == 1 and s["n"] == 3


def test_zero_reference_mean_leaves_relative_undefined(tmp_path):
    root = make_root(tmp_path, n=3)
    s = LlavaBenchProtocol().score(preds(3), root, judge=StubJudge({"0": "1 5", "1": "x", "2": "0 3"}), n_boot=0)
    assert "complex/relative" not in s["metrics"] and "ZeroDivisionError" in s["undefined"]["complex/relative"]
    assert s["metrics"]["conv/relative"] == pytest.approx(500.0) and s["metrics"]["detail/relative"] == 100.0


def test_unknown_ids_missing_predictions_and_missing_images_are_reported_with_ids(tmp_path):
    root = make_root(tmp_path, n=6)
    (root / "llava-bench" / "images" / "1.jpg").unlink()
    p = [x for x in preds(6) if x["id"] not in ("0", "4")] + [{"id": "77", "text": "x"}]
    s = LlavaBenchProtocol().score(p, root, judge=StubJudge({str(i): "8 8" for i in range(6)}), n_boot=0)
    r = s["skipped"]["reasons"]
    assert "not in the benchmark" in r["77"] and r["0"] == "no prediction"
    assert "image not found: 1.jpg" in r["4"] and s["n"] == 4


def test_bad_question_files_are_one_line_data_errors(tmp_path):
    from bench.errors import DataError

    root = make_root(tmp_path, n=3)
    write_jsonl(root / "llava-bench" / "answers_gpt4.jsonl", [{"question_id": 0, "text": "r"}])
    with pytest.raises(DataError, match="no reference answer for question_id 1"):
        LlavaBenchProtocol().items(root)
    write_jsonl(root / "llava-bench" / "questions.jsonl", [{"question_id": 0, "image": "0.jpg", "text": "q",
                                                            "category": "chat"}])
    with pytest.raises(DataError, match="unknown category 'chat'"):
        LlavaBenchProtocol().items(root)


def test_score_is_recomputable_from_stored_replies(tmp_path):
    root = make_root(tmp_path / "d")
    replies = {str(i): f"{5 + i % 5} {3 + i % 4}" for i in range(9)}
    first = LlavaBenchProtocol().score(preds(9), root, judge=StubJudge(replies), cache_dir=tmp_path / "j", n_boot=20)
    again = LlavaBenchProtocol().score(preds(9), root, judge_replies=tmp_path / "j" / "llava-bench.jsonl",
                                       judge=StubJudge({}), n_boot=20)
    assert again["metrics"] == first["metrics"] and again["ci"] == first["ci"]


def test_reviewer_settings_system_message_and_preflight(monkeypatch, tmp_path):
    from metrics.judged import build_judge

    j = build_judge(LlavaBenchProtocol.params["judge"], LlavaBenchProtocol().judge_settings())
    assert j.model == "gpt-4-0314" and j.temperature == 0.2 and j.max_tokens == 1024
    assert j.body("p")["messages"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "p"}]
    plain = build_judge("openai:gpt-4-0314", {"temperature": 0.2, "max_tokens": 1024})
    assert plain.judge_id != j.judge_id  # the system message is part of the judge's identity
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    missing = LlavaBenchProtocol().missing_resources(tmp_path)
    assert sum("bench data fetch llava-bench" in m for m in missing) == 3
    assert any("llava-bench-annotation" in m for m in missing)
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    assert LlavaBenchAnnotationProtocol().missing_resources(make_root(tmp_path / "ok")) == []


# ------------------------------------------------------------------------------------------ annotation judge
def test_annotation_reviewer_scores_both_answers_from_object_claims():
    from metrics.llava_bench import LlavaBenchAnnotationJudge

    judge = LlavaBenchAnnotationJudge()
    reply = judge(build_prompt("The image shows a cup and a dog.", "q", "There is a cup and a dog.",
                               "There is a cup and a bottle.", "conv"))
    (s1, s2), ok = parse_score(reply)
    assert ok and s1 == 10 and s2 == max(1, 1 + round(9 * 0.5) - 3)


def test_annotation_protocol_scores_the_synthetic_world_offline(synthetic_root, tmp_path):
    bench = LlavaBenchAnnotationProtocol()
    qs = bench.questions(synthetic_root)
    assert len(qs) == 60 and {q["category"] for q in qs} == set(CATS)
    assert sum(q["category"] == "complex" for q in qs) == 26
    p = [{"id": q["id"], "text": q["reference"]} for q in qs]  # the model repeats the reference answers
    s = bench.score(p, synthetic_root, cache_dir=tmp_path, n_boot=20)
    assert s["metrics"]["relative"] == pytest.approx(100.0) and s["n"] == 60
    assert s["judge"]["id"].startswith("llava-bench-annotation")


# ------------------------------------------------------------------------------------------ parity
def test_copied_parity_fixture_passes():
    results = run_parity(PARITY / "llava-bench", TEST_DATA)
    assert [r.name for r in results] == ["llava-bench/expected_vA.json"] and all(r.ok for r in results), results


def test_parity_case_fails_on_a_changed_expected_value(tmp_path):
    folder = tmp_path / "held_out"
    shutil.copytree(PARITY / "llava-bench", folder)
    exp = json.loads((folder / "expected_vA.json").read_text())
    exp["per_category"]["conv"]["relative"] += 0.1
    (folder / "expected_vB.json").write_text(json.dumps(exp))
    shutil.copyfile(folder / "replies_vA.jsonl", folder / "replies_vB.jsonl")
    results = {r.name: r for r in run_parity(folder, tmp_path)}
    assert results["llava-bench/expected_vA.json"].ok
    assert not results["llava-bench/expected_vB.json"].ok
    assert "per_category.conv.relative" in results["llava-bench/expected_vB.json"].first_diff


# ------------------------------------------------------------------------------------------ end to end
def test_tiny_llava_eval_scores_both_offline_protocols_into_records_and_the_leaderboard(synthetic_root, tmp_path,
                                                                                      monkeypatch):
    from bench.pipeline import EvalConfig, eval_checkpoint, write_leaderboard
    from bench.plugins import load_plugins

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    load_plugins()
    out = tmp_path / "runs"
    names = ["mmhal-annotation", "llava-bench-annotation"]
    eval_checkpoint("tiny-llava", None, "base", names, out / "tiny-llava" / "base", synthetic_root, 0, "cpu",
                    EvalConfig(batch_size=8, limit=12, n_boot=30), progress=False)
    base = out / "tiny-llava" / "base"
    rec = json.loads((base / "run.json").read_text())
    for name in names:
        score = json.loads((base / "scores" / f"{name}.json").read_text())
        assert score["protocol"] == name and score["ci"] and score["judge"]["requests"] + score["judge"]["cache_hits"]
        assert (base / "judge" / f"{name}.jsonl").exists() and rec["benchmarks"][name]["fingerprint"]
    md = write_leaderboard(out)["md"].read_text()
    assert "LLaVA-Bench relative (annotation judge)" in md and "MMHal score (annotation judge)" in md
