"""CHAIR parity runner on the copied fixtures: discovery by file-name pattern, held-out-style cases, first
differences, less-is-more style image ids."""

import json
import shutil

import pytest

from bench import nltk_data
from bench.parity.chair import discover, parse_image_id
from tests.conftest import TEST_DATA

HAVE_NLTK = not nltk_data.missing(("tokenizer", "tagger", "wordnet"))
needs_nltk = pytest.mark.skipif(
    not HAVE_NLTK, reason="NLTK data (punkt_tab, averaged_perceptron_tagger_eng, wordnet) not found: set"
                          " BENCH_NLTK_DATA (CI: ../shared/reference/nltk_data) or run `python -m bench data fetch nltk`")
PARITY = TEST_DATA / "shared" / "parity" / "chair"


def _copy_world(tmp_path):
    """tests/data layout (fixtures + the repo-relative inputs they name) under tmp_path."""
    shutil.copytree(PARITY, tmp_path / "shared" / "parity" / "chair")
    shutil.copytree(TEST_DATA / "shared" / "reference" / "chair", tmp_path / "shared" / "reference" / "chair")
    return tmp_path / "shared" / "parity" / "chair"


def test_discovery_uses_file_name_pattern_and_content():
    names = sorted(c.name for c in discover(TEST_DATA / "shared" / "parity", TEST_DATA))
    assert names == sorted(f"chair/{p.name}" for p in PARITY.glob("expected_*__*__gt_*.json"))
    assert len(names) == 3


def test_a_json_with_a_matching_name_but_another_benchmark_is_ignored(tmp_path):
    (tmp_path / "expected_x__singularize__gt_singularize.json").write_text('{"benchmark": "POPE"}')
    (tmp_path / "expected_y__wordnet_pos__gt_wordnet_pos.json").write_text("not json")
    assert discover(tmp_path, tmp_path) == []


@needs_nltk
def test_every_copied_chair_fixture_passes():
    results = [c.run() for c in discover(PARITY, TEST_DATA)]
    assert results and all(r.ok for r in results), [r for r in results if not r.ok]


@needs_nltk
def test_a_held_out_style_case_with_a_new_name_runs(tmp_path):
    folder = _copy_world(tmp_path)
    shutil.copy(folder / "expected_tricky__singularize__gt_singularize.json",
                folder / "expected_heldout_words__singularize__gt_singularize.json")
    results = {c.name: c.run() for c in discover(folder, tmp_path)}
    assert results["chair/expected_heldout_words__singularize__gt_singularize.json"].ok


@needs_nltk
def test_a_corrupted_expectation_fails_with_its_first_difference(tmp_path):
    folder = _copy_world(tmp_path)
    path = folder / "expected_tricky__wordnet_pos__gt_wordnet_pos.json"
    exp = json.loads(path.read_text())
    exp["per_caption"][1]["mention_idxs"][0] += 1
    path.write_text(json.dumps(exp))
    (result,) = [c.run() for c in discover(folder, tmp_path) if "tricky__wordnet" in c.name]
    assert not result.ok and result.first_diff.startswith("per_caption[1].mention_idxs[0]: 3 != expected 4")


@needs_nltk
def test_a_wrong_printed_line_is_reported(tmp_path):
    folder = _copy_world(tmp_path)
    path = folder / "expected_tricky__singularize__gt_singularize.json"
    exp = json.loads(path.read_text())
    exp["printed"] = exp["printed"].replace("CHAIRs    :", "CHAIRs   :")
    path.write_text(json.dumps(exp))
    (result,) = [c.run() for c in discover(folder, tmp_path) if "tricky__singularize" in c.name]
    assert not result.ok and result.first_diff.startswith("printed:")


@needs_nltk
def test_less_is_more_style_inputs_parse_image_ids_from_file_names(tmp_path):
    """The held-out lim_r1 case keeps ids as "000000002239.jpg" strings and captions under "text"."""
    folder = _copy_world(tmp_path)
    rows = [json.loads(line) for line in (folder / "tricky_captions.jsonl").read_text().splitlines()]
    lim_rows = [{"question_id": i, "image_id": f"{r['image_id']:012d}.jpg", "text": r["caption"],
                 "case_id": r["case_id"]} for i, r in enumerate(rows)]
    (folder / "lim_style.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lim_rows))
    exp = json.loads((folder / "expected_tricky__wordnet_pos__gt_wordnet_pos.json").read_text())
    exp["inputs"].update({"captions": "shared/parity/chair/lim_style.jsonl", "image_id_key": "image_id",
                          "caption_key": "text", "image_id_parse": "less-is-more"})
    (folder / "expected_lim_style__wordnet_pos__gt_wordnet_pos.json").write_text(json.dumps(exp))
    results = {c.name: c.run() for c in discover(folder, tmp_path)}
    assert results["chair/expected_lim_style__wordnet_pos__gt_wordnet_pos.json"].ok


def test_image_id_parsing_follows_less_is_more():
    assert parse_image_id("000000002239.jpg", True) == 2239
    assert parse_image_id("COCO_val2014_000000002239.jpg", "yes") == 2239
    assert parse_image_id(2239, None) == 2239


def test_a_missing_input_file_fails_the_case_not_the_runner(tmp_path):
    from bench.parity import run_parity

    folder = tmp_path / "shared" / "parity" / "chair"
    folder.mkdir(parents=True)
    exp = json.loads((PARITY / "expected_tricky__singularize__gt_singularize.json").read_text())
    exp["inputs"]["captions"] = "shared/parity/chair/nowhere.jsonl"
    (folder / "expected_gone__singularize__gt_singularize.json").write_text(json.dumps(exp))
    (result,) = [r for r in run_parity(folder, tmp_path) if r.name.startswith("chair/")]
    assert not result.ok and "nowhere.jsonl" in result.first_diff
