"""Object HalBench: the reference's word processing and metrics, the protocol, its labels and bad input."""

import json
import shutil

import numpy as np
import pytest

from bench.parity import run_parity
from bench.registry import BENCHMARKS
from metrics.objhal import (caption_to_words, judge_response, metrics_from_counts, counts_of, printed_summary,
                            reference_overall, vocabulary)
from tests.conftest import TEST_DATA, requires_nltk

PARITY = TEST_DATA / "shared" / "parity" / "objhal"


@requires_nltk
def test_copied_reference_fixture_passes():
    results = run_parity(PARITY, TEST_DATA)
    assert [r.name for r in results] == ["objhal/expected_vA.json"]
    assert results[0].ok, results[0].first_diff


@requires_nltk
def test_fixture_made_for_bench_passes():
    """tests/data/parity/objhal: repeated images, empty answers, plurals, two-word objects, made by the reference."""
    (res,) = run_parity(TEST_DATA / "parity" / "objhal", TEST_DATA)
    assert res.ok, res.first_diff


@requires_nltk
def test_a_wrong_printed_value_fails(tmp_path):
    shutil.copytree(PARITY, tmp_path / "objhal")
    path = tmp_path / "objhal" / "expected_vA.json"
    exp = json.loads(path.read_text())
    exp["printed"]["Object Hall"] = 1.0
    path.write_text(json.dumps(exp))
    (res,) = run_parity(tmp_path, TEST_DATA)
    assert not res.ok and "Object Hall" in res.first_diff


@requires_nltk
def test_plurals_synonyms_and_double_words_map_to_node_words():
    mentions, nodes = caption_to_words("two puppies, a baby cat, the bow tie and a wine glass near a toilet seat")
    assert nodes == ["dog", "cat", "tie", "wine glass", "toilet"]
    assert mentions[1] == "cat" and mentions[2] == "tie"
    # "seat" (a chair synonym) is dropped only when a toilet is mentioned
    assert caption_to_words("a seat")[1] == ["chair"]
    assert caption_to_words("a toilet and a seat")[1] == ["toilet"]


@requires_nltk
def test_counts_and_response_level_rate_ignore_responses_without_objects():
    recs = [judge_response("Assistant: A dog and a cat.", {"dog"}), judge_response("A sunny day.", {"dog"}),
            judge_response("A dog.", {"dog", "cup"})]
    assert recs[0]["hallucinated"] == [["cat", "cat"]] and recs[0]["covered"] == ["dog"]
    assert recs[0]["n_words"] == 5  # "Assistant:" removed, split on single spaces
    m = metrics_from_counts(sum(counts_of(r) for r in recs), [])
    assert m["chair_s"] == 0.5 and m["chair_s_all"] == pytest.approx(1 / 3)
    assert m["chair_i"] == pytest.approx(1 / 3) and m["recall"] == pytest.approx(2 / 4)
    overall = reference_overall(recs)
    assert overall["CHAIRs_refine"] == m["chair_s"] and overall["coco_word_count"] == 2.0
    assert printed_summary(overall)["Response Hall"] == 50.0


def test_refined_synonyms_strip_entries_and_later_rows_win():
    vocab = vocabulary()
    assert "motor bike" in vocab.surfaces and vocab.double_words["motor bike"] == "motor bike"
    assert vocab.double_words["bow tie"] == "tie" and vocab.double_words["home plate"] == "home plate"
    assert vocab.inverse["person"] == "person" and vocab.inverse["bike"] == "bicycle"


def test_leaderboard_labels_say_object_halbench_not_coco_chair():
    cls = BENCHMARKS.get("objhal")
    assert all(label.startswith("Object HalBench") for label, _ in cls.headline.values())
    assert "not COCO CHAIR" in cls.description
    assert cls.generation.num_beams == 3 and cls.generation.max_new_tokens == 1024
    assert cls.fingerprint() != BENCHMARKS.get("chair").fingerprint()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from bench.data.synthetic import prepare_synthetic

    root = tmp_path_factory.mktemp("objhal_world")
    prepare_synthetic(root, seed=0, n_train=40, n_eval=12, n_pref=24)
    return root


@requires_nltk
def test_score_reports_unknown_and_missing_ids_and_rebuilds_from_details(world):
    bench = BENCHMARKS.get("objhal")()
    items = bench.items(world)
    assert len(items) == 12 and all(it.image.endswith(".png") for it in items)
    preds = [{"id": it.id, "text": "The image shows a dog and a cup."} for it in items[1:]]
    preds.append({"id": "424242", "text": "A cat."})
    score = bench.score(preds, world, n_boot=50)
    reasons = score["skipped"]["reasons"]
    assert reasons[items[0].id] == "no prediction" and reasons["424242"] == "id not in protocol objhal"
    assert score["skipped"]["count"] == 2 and score["n"] == 11
    assert set(score["ci"]) >= {"chair_s", "chair_i", "recall"}
    assert score["ground_truth"]["images_without_entry"] == []
    units, statistic = bench.paired_units(score)
    again = statistic(np.sum(list(units.values()), axis=0))
    for key, value in score["metrics"].items():
        assert again[key] == pytest.approx(value), key
    # every GT set is the world's own objects (instances) plus caption words
    inst = json.loads((world / "coco" / "annotations" / "instances_val2014.json").read_text())
    first = int(items[1].id)
    names = {c["id"]: c["name"] for c in inst["categories"]}
    objects = {names[a["category_id"]] for a in inst["annotations"] if a["image_id"] == first}
    detail = next(d for d in score["details"]["per_item"] if d["image_id"] == first)
    assert detail["n_gt"] == len(objects)


def _blob_id(raw: bytes) -> str:
    import hashlib

    return hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest()


def test_fetch_converts_the_released_question_file_and_checks_its_blob_id(tmp_path, monkeypatch):
    import base64

    import bench.data.catalogue as C
    import bench.data.convert as V
    import bench.data.download as D
    from bench.errors import BenchError

    rows = [{"image_id": 7, "question": "Describe this image.", "image": base64.b64encode(b"jpeg-7").decode()},
            {"image_id": 9, "question": "What is in it?", "image": base64.b64encode(b"jpeg-9").decode()}]
    raw = "".join(json.dumps(r) + "\n" for r in rows).encode()
    (tmp_path / "objhal" / "raw").mkdir(parents=True)
    (tmp_path / V.OBJHAL_RAW).write_bytes(raw)
    ctx = D.FetchContext(tmp_path, "objhal", D.Manifest(tmp_path), progress=False)
    with pytest.raises(BenchError, match="git blob id"):
        V.objhal_convert(ctx)  # the real pinned blob id does not match this file
    monkeypatch.setattr(V, "OBJHAL_BLOB", _blob_id(raw))
    V.objhal_convert(ctx)
    out = [json.loads(line) for line in (tmp_path / "objhal" / "questions.jsonl").read_text().splitlines()]
    assert out == [{"image_id": 7, "question": "Describe this image.", "image": "objhal/images/7.jpg"},
                   {"image_id": 9, "question": "What is in it?", "image": "objhal/images/9.jpg"}]
    assert (tmp_path / "objhal" / "images" / "9.jpg").read_bytes() == b"jpeg-9"
    assert "objhal/images/7.jpg" in D.Manifest(tmp_path).data["files"]
    assert "coco-val2014" in C.SOURCES["objhal"].requires
    amber = C.SOURCES["amber"].files[0]
    assert amber.sha256 == "b4b95686f4f562eab09d449c2e6483df4071e312e73394a2741d5f76f851489c"
