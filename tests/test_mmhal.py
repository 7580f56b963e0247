"""MMHal-Bench: the reference's prompt, rating search (zero / several ratings → 0, counted), aggregation,
per-type breakdown, bad input reported with ids, recomputation from stored replies, the offline preflight,
the annotation judge and the synthetic world."""

import json
import shutil

import numpy as np
import pytest

from bench.io import sha256_file, sha256_text
from bench.parity import run_parity
from metrics.mmhal import (QUESTION_TYPES, MMHalAnnotationProtocol, MMHalProtocol, build_prompt, clean_answer,
                           parse_prompt, parse_rating, reference_summary, template)
from tests.conftest import TEST_DATA

PARITY = TEST_DATA / "shared" / "parity"


class StubJudge:
    """Answers by question text: ``question k`` → ``replies[k]``; counts calls."""

    def __init__(self, replies, judge_id="stub:judge"):
        self.replies, self.judge_id, self.calls = replies, judge_id, 0

    def __call__(self, prompt, attempt=0):
        self.calls += 1
        return self.replies[int(parse_prompt(prompt)[1].rsplit(" ", 1)[1])]


def make_root(tmp_path, n=16, images=True):
    rows = [{"question_type": QUESTION_TYPES[i % 8], "question_topic": "t", "image_id": f"im{i // 2}",
             "image_src": f"https://x.invalid/a/{i // 2}_o.jpg?x=1", "image_content": ["Cat", "Dog"],
             "question": f"question {i}", "gt_answer": "There is a cat.", "model_answer": ""} for i in range(n)]
    (tmp_path / "mmhal" / "images").mkdir(parents=True)
    (tmp_path / "mmhal" / "response_template.json").write_text(json.dumps(rows))
    if images:
        for i in range(n // 2):
            (tmp_path / "mmhal" / "images" / f"{i}_o.jpg").write_bytes(b"x")
    return tmp_path


def preds(n):
    return [{"id": str(i), "text": f"Assistant: answer {i} "} for i in range(n)]


# ------------------------------------------------------------------------------------------ prompt / parser
def test_template_is_the_reference_text_with_four_slots():
    t = template()
    assert t.count("{}") == 4 and t.startswith("Please act as an impartial and objective judge")
    assert "- Rating: 6, very informative with good analysis or reasoning, no hallucination" in t
    assert sha256_text(t) == MMHalProtocol.params["template_sha256"]


def test_prompt_joins_image_contents_with_comma_space_and_parse_inverts_it():
    p = build_prompt(["Fire hydrant", "Tree"], "What color?", "Yellow.", "Red.")
    assert "### Image Contents\nFire hydrant, Tree\n\n### Question\nWhat color?\n\n" in p
    assert p.endswith("### LMM Response to Evaluate\nRed.\n")
    assert parse_prompt(p) == ("Fire hydrant, Tree", "What color?", "Yellow.", "Red.")
    assert parse_prompt("not a prompt") is None


def test_answer_cleanup_removes_every_assistant_marker_and_strips():
    assert clean_answer("  Assistant: a red Assistant: cap \n") == "a red  cap"
    assert clean_answer(None) == ""


@pytest.mark.parametrize("reply,expected", [
    ("Explanation.\nRating: 5, very informative", (5, "ok")),
    ("RATING: 4", (4, "ok")),
    ("rating: 0", (0, "ok")),
    ("Rating:5", (0, "no rating")),  # no space: the reference's substring search misses it
    ("Rating: 7, outside the scale", (0, "no rating")),
    ("I cannot rate this response.", (0, "no rating")),
    ("Rating: 1\nOn reflection, Rating: 3", (0, "several ratings")),
    ("Rating: 56", (5, "ok")),  # a substring search: only 'rating: 5' occurs
])
def test_rating_search_follows_the_reference(reply, expected):
    assert parse_rating(reply) == expected


def test_reference_summary_groups_types_by_index_mod_8_and_prints_two_decimals():
    replies = [f"Rating: {i % 7}" for i in range(16)]
    s = reference_summary(replies)
    ratings = [i % 7 for i in range(16)]
    assert s["score"] == float(f"{sum(ratings) / 16:.2f}")
    assert s["hallucination_rate"] == float(f"{sum(r < 3 for r in ratings) / 16:.2f}")
    assert s["per_type"]["attribute"] == round((0 + 1) / 2, 2)  # indices 0 and 8
    info = [r - 3 if r >= 3 else r for r in ratings]
    assert s["informativeness"] == float(f"{np.mean(info) / 3 * 100:.2f}")


# ------------------------------------------------------------------------------------------ scoring
def test_scores_mean_rating_hallucination_share_informativeness_and_per_type(tmp_path):
    root = make_root(tmp_path)
    ratings = [6, 2, 3, 0, 5, 1, 4, 3, 2, 6, 6, 4, 0, 3, 5, 1]
    judge = StubJudge([f"Because.\nRating: {r}" for r in ratings])
    s = MMHalProtocol().score(preds(16), root, judge=judge, n_boot=50)
    m = s["metrics"]
    assert m["score"] == pytest.approx(np.mean(ratings))
    assert m["hallucination_rate"] == pytest.approx(np.mean([r < 3 for r in ratings]))
    assert m["informativeness"] == pytest.approx(np.mean([r - 3 if r >= 3 else r for r in ratings]) / 3)
    assert m["attribute/score"] == pytest.approx((6 + 2) / 2) and m["other/score"] == pytest.approx((3 + 1) / 2)
    assert s["n"] == 16 and s["skipped"]["count"] == 0 and judge.calls == 16
    assert set(s["ci"]) >= {"score", "hallucination_rate"} and s["ci"]["score"][0] <= m["score"] <= s["ci"]["score"][1]
    assert {it["image"] for it in s["details"]["per_item"]} == {f"im{k}" for k in range(8)}
    units, stat = MMHalProtocol().paired_units(s)
    assert len(units) == 8 and stat(np.sum(list(units.values()), axis=0)) == pytest.approx(m)
    assert s["judge"]["model"] == "gpt-4-1106-preview"


def test_replies_with_zero_or_several_ratings_score_zero_and_are_reported_with_ids(tmp_path):
    root = make_root(tmp_path, n=8)
    replies = ["Rating: 5"] * 8
    replies[2], replies[5] = "No rating here.", "Rating: 4 or maybe Rating: 6"
    s = MMHalProtocol().score(preds(8), root, judge=StubJudge(replies), n_boot=0)
    assert s["metrics"]["score"] == pytest.approx(5 * 6 / 8)  # the two count as 0, as the reference does
    assert s["n"] == 8
    assert s["rating_failures"] == {"count": 2, "by_kind": {"no rating": 1, "several ratings": 1},
                                    "items": {"2": "no rating", "5": "several ratings"}}
    assert "scored 0" in s["skipped"]["reasons"]["2"] and "scored 0" in s["skipped"]["reasons"]["5"]
    assert s["skipped"]["kept_in_metrics"] == 2


def test_unknown_ids_missing_predictions_and_missing_images_are_reported_with_ids(tmp_path):
    root = make_root(tmp_path, n=8)
    (root / "mmhal" / "images" / "3_o.jpg").unlink()
    p = [x for x in preds(8) if x["id"] not in ("6", "7")] + [{"id": "99", "text": "x"}]
    s = MMHalProtocol().score(p, root, judge=StubJudge(["Rating: 4"] * 8), n_boot=0)
    r = s["skipped"]["reasons"]
    assert "not in the benchmark" in r["99"]
    assert r["6"].startswith("no prediction") and "image not found: 3_o.jpg" in r["7"]
    assert s["n"] == 6 and s["metrics"]["score"] == 4.0


def test_score_is_recomputable_from_stored_replies_and_keyed_by_prompt_and_judge(tmp_path):
    root = make_root(tmp_path / "data", n=8)
    judge_dir = tmp_path / "judge"
    replies = [f"Rating: {i % 7}" for i in range(8)]
    first = MMHalProtocol().score(preds(8), root, judge=StubJudge(replies), cache_dir=judge_dir, n_boot=20)
    stored = judge_dir / "mmhal.jsonl"
    again = MMHalProtocol().score(preds(8), root, judge_replies=stored,
                                  judge=StubJudge(["unused"] * 8), n_boot=20)
    assert again["metrics"] == first["metrics"] and again["ci"] == first["ci"] and again["skipped"]["count"] == 0
    changed = preds(8)
    changed[0]["text"] = "another answer"
    s = MMHalProtocol().score(changed, root, judge_replies=stored, judge=StubJudge(["x"] * 8), n_boot=0)
    assert s["skipped"]["reasons"]["0"].startswith("no stored judge reply") and s["n"] == 7
    other = MMHalProtocol().score(preds(8), root, judge_replies=stored, judge=StubJudge(["x"] * 8, "stub:other"),
                                  n_boot=0)
    assert other["n"] == 0 and other["judge"]["ignored_replies_of_other_judges"] == 8
    rerun = StubJudge(replies)
    MMHalProtocol().score(preds(8), root, judge=rerun, cache_dir=judge_dir, n_boot=0)
    assert rerun.calls == 0  # every reply replayed from judge/mmhal.jsonl


def test_gpt_protocol_lists_missing_data_and_key_before_generation(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    missing = MMHalProtocol().missing_resources(tmp_path)
    assert any("bench data fetch mmhal" in m for m in missing)
    assert any("$OPENAI_API_KEY" in m and "mmhal-annotation" in m for m in missing)
    root = make_root(tmp_path / "d", n=8)
    (root / "mmhal" / "images" / "0_o.jpg").unlink()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
    missing = MMHalProtocol().missing_resources(root)
    assert len(missing) == 1 and "1 of 4 MMHal-Bench images" in missing[0]


def test_judge_settings_are_the_references_and_enter_the_judge_id():
    from metrics.judged import build_judge

    gpt = build_judge(MMHalProtocol.params["judge"], MMHalProtocol().judge_settings())
    assert gpt.model == "gpt-4-1106-preview" and gpt.temperature == 0.0 and gpt.max_tokens == 512
    assert gpt.body("p")["messages"] == [{"role": "user", "content": "p"}] and gpt.body("p")["top_p"] == 1
    other = build_judge("openai:gpt-4o", MMHalProtocol().judge_settings())
    assert other.judge_id != gpt.judge_id
    assert MMHalProtocol.generation.num_beams == 3 and MMHalProtocol.generation.max_new_tokens == 1024
    assert MMHalAnnotationProtocol.fingerprint() != MMHalProtocol.fingerprint()


def test_served_judge_model_is_recorded_and_a_substitute_is_noted(tmp_path):
    from bench.judges import CachedJudge

    class Served(CachedJudge):
        judge_id, version = "openai:gpt-4-1106-preview:stub", "7"

        def reply_with_meta(self, prompt):
            return "Rating: 4", {"model": "gpt-4-0613"}

        def reply(self, prompt):
            return "Rating: 4"

    root = make_root(tmp_path / "d", n=8)
    s = MMHalProtocol().score(preds(8), root, judge=Served(tmp_path / "cache"), cache_dir=tmp_path / "j", n_boot=0)
    assert s["judge"]["served_models"] == {"gpt-4-0613": 8} and s["judge"]["version"] == "7"
    assert any("gpt-4-0613" in n for n in s["notes"])
    stored = [json.loads(x) for x in (tmp_path / "j" / "mmhal.jsonl").read_text().splitlines()]
    assert {r["model"] for r in stored} == {"gpt-4-0613"}


# ------------------------------------------------------------------------------------------ annotation judge
def test_annotation_judge_rates_object_claims_and_answer_coverage():
    from metrics.mmhal import MMHalAnnotationJudge

    judge = MMHalAnnotationJudge()

    def rate(contents, gt, response):
        return parse_rating(judge(build_prompt(contents, "q", gt, response)))[0]

    assert rate(["Cup", "Dog"], "The cup is cyan.", "The cup is cyan.") == 6
    assert rate(["Cup", "Dog"], "The cup is cyan.", "The cup is red.") == 4  # no false object, half the terms
    assert rate(["Cup", "Dog"], "The cup is cyan.", "There is a bottle next to the cup.") <= 2
    assert rate(["Cup"], "There is no bottle in the image.", "There is no bottle here.") == 6
    assert rate(["Cup"], "There is no bottle in the image.", "The bottle is green.") <= 2
    assert rate(["Cup"], "The objects are drawn on a plain dark background.", "No") == 3


def test_annotation_protocol_scores_the_synthetic_world_offline(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    bench = MMHalAnnotationProtocol()
    assert bench.missing_resources(synthetic_root) == []
    items = bench.items(synthetic_root)
    assert len(items) == 12 and all(__import__("os").path.exists(it.image) for it in items)
    assert [it.meta["question_type"] for it in items[:8]] == list(QUESTION_TYPES)
    rows = bench.questions(synthetic_root)
    p = [{"id": it.id, "text": rows[int(it.id)]["gt_answer"]} for it in items]  # the true answers
    s = bench.score(p, synthetic_root, cache_dir=tmp_path, n_boot=20)
    assert s["n"] == 12 and s["metrics"]["hallucination_rate"] == 0.0 and s["metrics"]["score"] == 6.0
    wrong = [{"id": it.id, "text": "There is a bus, a fork, a dog and a couch."} for it in items]
    s2 = bench.score(wrong, synthetic_root, cache_dir=tmp_path, n_boot=0)
    assert s2["metrics"]["hallucination_rate"] > 0.5 and s2["judge"]["id"].startswith("mmhal-annotation")


def test_synthetic_files_are_added_to_an_older_world_on_demand(synthetic_root, tmp_path):
    old = tmp_path / "world"
    shutil.copytree(synthetic_root, old)
    shutil.rmtree(old / "mmhal")
    shutil.rmtree(old / "llava-bench")
    items = MMHalAnnotationProtocol().items(old)
    assert len(items) == 12
    assert sha256_file(old / "mmhal" / "response_template.json") == \
        sha256_file(synthetic_root / "mmhal" / "response_template.json")
    assert "mmhal/response_template.json" in json.loads((old / "manifest.json").read_text())["files"]


# ------------------------------------------------------------------------------------------ parity
def test_copied_parity_fixture_passes():
    results = run_parity(PARITY / "mmhal", TEST_DATA)
    assert [r.name for r in results] == ["mmhal/expected_vA.json"] and all(r.ok for r in results), results


@pytest.mark.parametrize("edit,where", [
    (lambda e: e.update(score=e["score"] + 0.01), "score"),
    (lambda e: e["per_type"].update(other=9.0), "per_type.other"),
    (lambda e: e.update(informativeness=1.0), "informativeness"),
])
def test_parity_case_fails_on_a_changed_expected_value(tmp_path, edit, where):
    folder = tmp_path / "held_out"
    shutil.copytree(PARITY / "mmhal", folder)
    path = folder / "expected_vA.json"
    exp = json.loads(path.read_text())
    edit(exp)
    path.with_name("expected_vB.json").write_text(json.dumps(exp))
    shutil.copyfile(folder / "replies_vA.json", folder / "replies_vB.json")
    results = {r.name: r for r in run_parity(folder, tmp_path)}
    assert results["mmhal/expected_vA.json"].ok
    bad = results["mmhal/expected_vB.json"]
    assert not bad.ok and where in bad.first_diff
