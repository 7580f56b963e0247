"""SHR scorer (metrics/shr.py) and its parity runner (bench/parity/shr.py): HA-DPO's procedure, its
crash points turned into defined results, recomputation from stored judge replies."""

import json
import shutil
from pathlib import Path

import pytest

from bench.io import read_jsonl, sha256_file, write_jsonl
from bench.parity.shr import discover
from bench.registry import BENCHMARKS
from metrics import shr as S

DATA = Path(__file__).resolve().parent / "data"
FIXTURES = DATA / "parity" / "shr"
TEMPLATE_COPY = DATA / "shared" / "reference" / "shr" / "shr_judge_prompt_template.txt"


# ------------------------------------------------------------------------------------------ prompt
def test_template_is_byte_identical_to_the_reference_copy():
    assert S.TEMPLATE_FILE.read_bytes() == TEMPLATE_COPY.read_bytes()
    assert sha256_file(S.TEMPLATE_FILE).startswith("00550be1a5a96e48")
    assert S.template().count("{}") == 3 and S.template().startswith("\nPlease help me judge")


def test_region_boxes_are_two_decimal_floats_in_list_repr_and_empty_phrases_skipped():
    regions = [{"x": 80, "y": 150, "width": 320, "height": 450, "phrase": "a dog"},
               {"x": 0, "y": 0, "width": 800, "height": 600, "phrase": "a park"},
               {"x": 1, "y": 1, "width": 1, "height": 1, "phrase": ""},
               {"x": 100, "y": 150, "width": 200, "height": 300, "phrase": "a brown dog"}]
    assert S.render_regions(regions, 800, 600) == ("[0.1, 0.25, 0.5, 1.0]: a dog\n[0.0, 0.0, 1.0, 1.0]: a park\n"
                                                   "[0.12, 0.25, 0.38, 0.75]: a brown dog\n")


def test_facts_block_ends_with_a_newline_or_is_empty():
    assert S.render_facts(["The dog is brown.", "One dog."]) == "The dog is brown.\nOne dog.\n"
    assert S.render_facts([]) == ""


def test_prompt_is_the_template_filled_with_regions_facts_and_numbered_sentences():
    regions = S.render_regions([{"x": 0, "y": 0, "width": 5, "height": 5, "phrase": "a cup"}], 10, 10)
    kept, _ = S.split_at_periods("A cup. A red cup on a table!")
    prompt = S.build_prompt(regions, "There is a cup.\n", kept)
    expected = TEMPLATE_COPY.read_text(encoding="utf-8").format(
        "[0.0, 0.0, 0.5, 0.5]: a cup\n", "There is a cup.\n", "1. A cup\n2. A red cup on a table!\n")
    assert prompt == expected
    assert prompt.endswith("(hallucination, correct, or cannot judge): \n1. A cup\n2. A red cup on a table!\n\n")


def test_prompts_match_the_reference_fixture_byte_for_byte():
    inp = json.loads((FIXTURES / "shr_case_A.input.json").read_text())
    exp = json.loads((FIXTURES / "shr_case_A.expected.json").read_text())
    for im in inp["images"]:
        iid = str(im["image_id"])
        kept, _ = S.split_at_periods(inp["responses"][iid])
        prompt = S.build_prompt(S.render_regions(im["regions"], im["width"], im["height"]),
                                S.render_facts(inp["factual"].get(iid, [])), kept)
        assert prompt == exp["judge_prompts"][iid]


def test_parse_prompt_inverts_build_prompt():
    sentences = ["A dog runs", "It is\nsunny", "Two cats!"]
    prompt = S.build_prompt("[0.0, 0.0, 1.0, 1.0]: a dog\n", "", sentences)
    assert S.parse_prompt(prompt) == ("[0.0, 0.0, 1.0, 1.0]: a dog\n", "", sentences)
    assert S.parse_prompt(S.build_prompt("", "", [])) == ("", "", [])
    assert S.parse_prompt("Judge this: a dog.") is None


# ------------------------------------------------------------------------------------------ sentences
def test_sentences_split_on_every_period_and_drop_exact_and_contained_repeats():
    kept, repeated = S.split_at_periods("A pizza sits on a plate. A pizza sits on a plate. The glass is 3.5 inches"
                                       " tall! Is it? Yes.  pizza sits .")
    assert kept == ["A pizza sits on a plate", "The glass is 3", "5 inches tall! Is it? Yes"] and repeated
    assert S.split_at_periods("One. Two.") == (["One", "Two"], False)
    assert S.split_at_periods("...") == ([], False) and S.split_at_periods("") == ([], False)


def test_segments_get_a_period_appended_even_after_exclamation_marks():
    assert S.segment("Wow!. A dog. A dog.\nA cat?") == ["Wow!.", "A dog.", "A cat?."]
    assert S.numbered(["a", "b"]) == "1. a\n2. b\n"


def test_repetition_deletes_punctuation_and_newlines_before_counting_ngrams():
    assert S.repetition("a b. a b", 1) == 0.5
    assert S.repetition("a b. a b", 2) == 2 / 3
    assert S.repetition("dog\ncat dog", 1) == 1.0  # "dogcat" glued by deleting the newline
    assert S.repetition("one two", 3) is None and S.repetition("", 1) is None


# ------------------------------------------------------------------------------------------ parsing
def test_parser_lowercases_the_text_before_the_first_colon_and_skips_blank_lines():
    j = S.parse_judgement("Sure.\n\nJudgement:\n\n1. Correct: yes: really\n2. HALLUCINATION: no\n3. cannot judge", 3)
    assert j.status == "ok" and j.labels == ["correct", "hallucination", "cannot judge"]
    assert j.texts == ["Correct: yes: really", "HALLUCINATION: no", "cannot judge"]


def test_parser_drops_only_the_first_space_separated_token_like_the_reference():
    # a leading space makes the empty string the dropped token, so the number stays in the label
    j = S.parse_judgement("Judgement:\n 1. correct: x\n2.correct:y\n3. hallucination: z", 2)
    assert j.status == "ok" and j.labels == ["1. correct", "hallucination"]  # "2.correct:y" → "" → dropped


def test_parser_without_a_judgement_colon_line_is_a_defined_failure():
    j = S.parse_judgement("Judgement\n1. correct: a\n2. correct: b", 2)
    assert j.status == "no-judgement-colon" and j.labels == [None, None] and "IndexError" in j.detail


def test_parser_with_trailing_commentary_labels_every_sentence_none():
    j = S.parse_judgement("Judgement:\n1. correct: x\nOverall the text is fine.", 1)
    assert j.status == "count-mismatch" and j.labels == [None] and j.detail == "2 verdict lines for 1 sentences"


def test_parser_keeps_unknown_verdicts_as_labels():
    j = S.parse_judgement("Judgement:\n1. partially correct: grass\n2. correct", 2)
    assert j.status == "ok" and j.labels == ["partially correct", "correct"]


# ------------------------------------------------------------------------------------------ metrics
def _inp(iid, response, **kw):
    return S.ShrInput(str(iid), response, "[0.0, 0.0, 1.0, 1.0]: a dog\n", "", **kw)


def _canned(replies):
    """A reply source serving replies[id][attempt] (None past the end)."""
    calls = []

    def source(inp, attempt):
        calls.append((inp.id, attempt))
        seq = replies.get(inp.id, [])
        return seq[attempt] if attempt < len(seq) else None

    return source, calls


def test_shr_pools_sentences_over_images_and_counts_cannot_judge_in_the_denominator():
    inputs = [_inp(1, "A dog. A cat. A hat."), _inp(2, "A cow. Sunny day.")]
    source, _ = _canned({"1": ["Judgement:\n1. correct: a\n2. hallucination: b\n3. cannot judge: c"],
                         "2": ["Judgement:\n1. hallucination: a\n2. partially correct: b"]})
    res = S.evaluate(inputs, source)
    m = res.metrics()
    assert m["shr"] == 2 / 4  # pooled: 2 hallucinations / 4 labelled (the unknown label is left out)
    assert m["sents_per_image"] == 5 / 2  # all sentences, unknown label included
    assert m["words_per_image"] == (3 * 2 + 2 * 2) / 2  # "A dog." → ["A", "dog."]
    assert m["hal_words_ratio"] == 4 / 8
    assert res.unknown_labels() == {"partially correct": 1}
    ref = res.reference_metrics()
    assert ref["mean_hal_ratio"] == 0.5 and ref["run1"]["num_images"] == 2


def test_words_are_counted_with_a_single_space_split_of_the_dotted_sentence():
    source, _ = _canned({"1": ["Judgement:\n1. hallucination: x"]})
    res = S.evaluate([_inp(1, "A  dog\nruns")], source)
    assert res.images["1"].sentences == ["A  dog\nruns."]
    assert res.metrics()["hal_words_per_image"] == 3  # ["A", "", "dog\nruns."]


def test_reply_without_judgement_is_asked_again_and_the_retries_are_bounded():
    source, calls = _canned({"1": ["I cannot help.", "Judgement:\n1. correct: ok"]})
    res = S.evaluate([_inp(1, "A dog.")], source, max_attempts=3)
    assert calls == [("1", 0), ("1", 1)] and res.judge_calls == 2 and res.images["1"].judgement.labels == ["correct"]

    source, calls = _canned({"1": ["no verdict"] * 10})
    res = S.evaluate([_inp(1, "A dog.")], source, max_attempts=3)
    assert len(calls) == 3 and res.images["1"].judgement.status == "no-judgement"
    assert res.parse_failures()["by_status"] == {"no-judgement": 1}
    assert "shr" in res.undefined()  # nothing labelled: defined result, not a crash


def test_all_unparsed_images_leave_shr_undefined_but_keep_per_image_averages():
    source, _ = _canned({"1": ["Judgement:\n1. correct: x"], "2": ["Judgement:\n1. correct: y"]})
    res = S.evaluate([_inp(1, "A dog runs. A cat sits."), _inp(2, "Cows. Sheep graze here. Hens.")], source)
    m, ref = res.metrics(), res.reference_metrics()
    assert m["shr"] is None and m["hal_words_ratio"] is None and m["sents_per_image"] == 2.5
    assert ref["run1"]["hal_sents_ratio"] is None and ref["mean_hal_ratio"] is None
    assert set(res.undefined()) == {"shr", "hal_words_ratio"} and "ZeroDivisionError" in res.undefined()["shr"]
    assert res.parse_failures()["count"] == 2


def test_no_image_judged_gives_undefined_metrics_not_a_crash():
    res = S.evaluate([], _canned({})[0])
    assert all(v is None for v in res.metrics().values())
    assert "sents_per_image" in res.undefined() and res.reference_metrics()["run1"]["num_images"] == 0


def test_short_responses_are_left_out_of_the_ngram_mean_and_reported():
    source, _ = _canned({"1": ["Judgement:\n1. correct: x"], "2": ["Judgement:\n1. correct: x"]})
    res = S.evaluate([_inp(1, "Dog."), _inp(2, "a b a b")], source)
    m = res.metrics()
    assert m["gram-1-repetition"] == (1.0 + 0.5) / 2 and m["gram-2-repetition"] == 2 / 3
    assert any("gram-2" in n and "1 response" in n for n in res.notes())
    assert "gram-4-repetition" not in res.undefined()
    res = S.evaluate([_inp(1, "Dog.")], source)
    assert "gram-2-repetition" in res.undefined()


def test_a_repeated_image_id_keeps_the_last_judgement_like_the_reference():
    def source(inp, attempt):
        return "Judgement:\n1. hallucination: x" if inp.response == "B." else "Judgement:\n1. correct: x"

    res = S.evaluate([_inp(1, "A."), _inp(1, "B.")], source)
    assert list(res.images) == ["1"] and res.images["1"].judgement.labels == ["hallucination"]
    assert len(res.grams) == 2


# ------------------------------------------------------------------------------------------ protocol
def _world(root: Path, n: int = 4) -> list[dict]:
    write_jsonl(root / "shr" / "images.jsonl", [{"image_id": 10 + i, "image": f"vg/images/{10 + i}.jpg",
                                                 "width": 100, "height": 50} for i in range(n)])
    write_jsonl(root / "shr" / "regions.jsonl", [{"image_id": 10 + i, "regions": [
        {"x": 10, "y": 5, "width": 20, "height": 10, "phrase": "a brown dog"},
        {"x": 50, "y": 0, "width": 50, "height": 50, "phrase": "a red cup"}]} for i in range(n)])
    write_jsonl(root / "shr" / "facts.jsonl", [{"image_id": 10 + i, "facts": ["There is a dog."]}
                                               for i in range(n) if i % 2 == 0])
    responses = ["A dog sits. A cat sleeps. It is sunny.", "A red cup. A dog.", "A giraffe. A dog. A bus.",
                 "Nothing here at all."]
    return [{"id": str(10 + i), "text": responses[i % len(responses)]} for i in range(n)]


class _CountingJudge:
    """A judge double: labels sentences mentioning 'dog'/'cup' correct, others hallucination."""

    judge_id = "test:counting"

    def __init__(self):
        self.calls = 0

    def __call__(self, prompt, attempt=0):
        self.calls += 1
        _, _, sentences = S.parse_prompt(prompt)
        verdict = lambda s: "correct: seen" if ("dog" in s or "cup" in s) else "hallucination: unseen"  # noqa: E731
        return "Judgement:\n" + "\n".join(f"{i}. {verdict(s)}" for i, s in enumerate(sentences, 1))

    def stats(self):
        return {"id": self.judge_id, "requests": self.calls}


class _NoJudge(_CountingJudge):
    def __call__(self, prompt, attempt=0):
        raise AssertionError("the judge must not be called when recomputing")


def test_score_is_recomputable_from_stored_replies_without_calling_the_judge(tmp_path):
    preds = _world(tmp_path)
    bench = BENCHMARKS.get("shr")()
    judge = _CountingJudge()
    first = bench.score(preds, tmp_path, cache_dir=tmp_path / "judge", judge=judge, n_boot=50)
    stored = read_jsonl(tmp_path / "judge" / "shr.jsonl")
    assert judge.calls == 4 and len(stored) == 4
    assert set(stored[0]) == {"id", "judge", "prompt_sha256", "attempt", "reply"}
    assert stored[0]["judge"] == "test:counting"
    again = bench.score(preds, tmp_path, judge_replies=tmp_path / "judge" / "shr.jsonl", judge=_NoJudge(), n_boot=50)
    assert again["metrics"] == first["metrics"] and again["ci"] == first["ci"]
    rerun = bench.score(preds, tmp_path, cache_dir=tmp_path / "judge", judge=_NoJudge(), n_boot=50)
    assert rerun["metrics"] == first["metrics"]  # replies replayed from judge/shr.jsonl
    assert first["metrics"]["shr"] == 5 / 9 and first["n"] == 4
    lo, hi = first["ci"]["shr"]
    assert lo <= first["metrics"]["shr"] <= hi


def test_stored_replies_for_another_prompt_or_judge_are_not_used(tmp_path):
    preds = _world(tmp_path, n=2)
    bench = BENCHMARKS.get("shr")()
    bench.score(preds, tmp_path, cache_dir=tmp_path / "judge", judge=_CountingJudge(), n_boot=10)
    path = tmp_path / "judge" / "shr.jsonl"
    changed = [dict(preds[0], text="A different response."), preds[1]]
    res = bench.score(changed, tmp_path, judge_replies=path, judge=_NoJudge(), n_boot=10)
    assert res["skipped"]["reasons"] == {"10": "no stored judge reply"} and res["n"] == 1
    other = [dict(r, judge="openai:someone-else") for r in read_jsonl(path)]
    res = bench.score(preds, tmp_path, judge_replies=other, judge=_NoJudge(), n_boot=10)
    assert res["n"] == 0 and res["judge"]["ignored_replies_of_other_judges"] == 2 and "shr" not in res["metrics"]
    assert "shr" in res["undefined"]


def test_missing_predictions_and_too_long_prompts_are_skipped_with_reasons(tmp_path):
    preds = _world(tmp_path, n=3)
    long = dict(preds[1], text="A dog sits. " + " ".join(f"Word{i} and more{i}." for i in range(800)))
    bench = BENCHMARKS.get("shr")()
    res = bench.score([preds[0], long], tmp_path, judge=_CountingJudge(), n_boot=10)
    reasons = res["skipped"]["reasons"]
    assert reasons["12"] == "no prediction" and "> 15000 characters" in reasons["11"] and res["n"] == 1
    # the too-long image still counts in the repetition means (as HA-DPO's LLaVA script)
    assert res["metrics"]["gram-1-repetition"] != S.repetition(preds[0]["text"], 1)


def test_protocols_declare_hadpo_generation_and_judge_settings():
    shr, ann = BENCHMARKS.get("shr"), BENCHMARKS.get("shr-annotation")
    g = shr.generation
    assert (g.num_beams, g.max_new_tokens, g.do_sample, g.temperature) == (5, 512, False, 1.0)
    assert shr.params["prompt"] == "Describe this image in detail." and shr.params["judge"] == "openai:gpt-4"
    assert shr.params["judge_settings"]["temperature"] == 0.7 and shr.params["judge_settings"]["max_tokens"] == 800
    assert ann.params["judge"] == "annotation" and ann.generation == g
    assert ann.name != shr.name and ann.fingerprint() != shr.fingerprint()
    assert shr().make_judge(None).judge_id.startswith("openai:gpt-4:t0.7:m800")


def test_shr_annotation_scores_the_synthetic_world_offline(synthetic_root, tmp_path):
    bench = BENCHMARKS.get("shr-annotation")()
    items = bench.items(synthetic_root)
    assert items and all(Path(it.image).exists() for it in items)
    facts = {r["image_id"]: r["facts"] for r in read_jsonl(synthetic_root / "shr" / "facts.jsonl")}
    preds = [{"id": it.id, "text": facts[it.meta["image_id"]][0] + " A giraffe is here. It is sunny."}
             for it in items]
    res = bench.score(preds, synthetic_root, cache_dir=tmp_path / "judge", n_boot=20)
    assert res["n"] == len(items) and res["parse_failures"]["count"] == 0
    assert res["metrics"]["shr"] == pytest.approx(1 / 3)  # correct, hallucination, cannot judge per image
    assert res["judge"]["id"].startswith("annotation:")


# ------------------------------------------------------------------------------------------ parity
def test_every_copied_parity_fixture_passes():
    cases = discover(FIXTURES, DATA)
    assert len(cases) >= 3
    results = [c.run() for c in cases]
    assert all(r.ok for r in results), [(r.name, r.first_diff) for r in results if not r.ok]


def test_parity_cases_are_discovered_by_file_name_pattern(tmp_path):
    (tmp_path / "deep" / "er").mkdir(parents=True)
    for src in FIXTURES.glob("*.json"):
        new = src.name.replace("shr_case_A", "heldout_case_Z").replace("shr_edge", "other_edge")
        shutil.copy(src, tmp_path / "deep" / "er" / new)
    (tmp_path / "lonely.input.json").write_text("{}")
    (tmp_path / "pope.expected.json").write_text(json.dumps({"benchmark": "POPE"}))
    (tmp_path / "pope.input.json").write_text("{}")
    names = sorted(c.name for c in discover(tmp_path, tmp_path))
    assert names == ["shr/heldout_case_Z.expected.json", "shr/other_edge_all_unparsed.expected.json",
                     "shr/other_edge_no_colon.expected.json"]
    assert all(c.run().ok for c in discover(tmp_path, tmp_path))


def test_parity_reports_the_first_differing_field(tmp_path):
    shutil.copy(FIXTURES / "shr_case_A.input.json", tmp_path / "bad.input.json")
    exp = json.loads((FIXTURES / "shr_case_A.expected.json").read_text())
    exp["metrics"]["run1"]["hal_words_ratio"] = 0.131
    (tmp_path / "bad.expected.json").write_text(json.dumps(exp))
    (result,) = [c.run() for c in discover(tmp_path, tmp_path)]
    assert not result.ok
    assert result.first_diff.startswith("metrics.run1.hal_words_ratio: 0.13 != expected 0.131")
    exp = json.loads((FIXTURES / "shr_case_A.expected.json").read_text())
    exp["judgement"]["run1"]["2407"]["judgement"][1]["classification"] = "correct"
    (tmp_path / "bad.expected.json").write_text(json.dumps(exp))
    (result,) = [c.run() for c in discover(tmp_path, tmp_path)]
    assert not result.ok and "2407" in result.first_diff
