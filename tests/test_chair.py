import pytest

from metrics.chair import ChairProtocol, build_gt, caption_details
from metrics.chair_words import DOUBLE_WORDS, singularize, synonyms
from tests.conftest import requires_nltk


def test_synonym_file_quirks_are_reproduced():
    surfaces, inverse = synonyms()
    assert " motor bike" in surfaces and "motor bike" not in surfaces  # double space keeps a leading blank
    assert "iPhone" in surfaces and "iphone" not in surfaces
    assert inverse["ball"] == "sports ball" and inverse["table"] == "dining table"
    assert len({v for v in inverse.values()}) == 80
    assert len(DOUBLE_WORDS) == 55


@pytest.mark.parametrize("plural,singular", [
    ("dogs", "dog"), ("buses", "bus"), ("bus", "bu"), ("glass", "glas"), ("glasses", "glass"), ("people", "person"),
    ("knives", "knife"), ("benches", "bench"), ("skis", "ski"), ("sheep", "sheep"), ("mice", "mouse"),
    ("children", "child"), ("giraffes", "giraffe"), ("couches", "couch"), ("skiing", "skiing"),
])
def test_singularize_matches_pattern_on_coco_words(plural, singular):
    assert singularize(plural) == singular


def test_every_coco_plural_maps_back_to_a_synonym():
    surfaces, _ = synonyms()
    for word in ["dogs", "cats", "cars", "trucks", "umbrellas", "benches", "sandwiches", "toothbrushes", "knives",
                 "giraffes", "zebras", "elephants", "laptops", "bottles", "chairs", "couches", "donuts"]:
        assert singularize(word) in surfaces, word


@requires_nltk
def test_toilet_seat_rule_shifts_mention_indices_like_the_reference():
    d = caption_details("The seat of the toilet is white, and there is a chair by the sink.", {"toilet", "sink"},
                        "wordnet")
    assert d["mentioned_words"] == ["toilet", "chair", "sink"]
    assert d["mention_idxs"] == [3, 11, 14]  # not [4, 12, 15]: the reference indexes the filtered list
    assert d["hallucinated"] == [["chair", "chair"]]


@requires_nltk
def test_duplicate_mentions_count_and_two_word_phrases_merge():
    d = caption_details("A hot dog next to two hot dogs and a dog.", {"hot dog"}, "wordnet")
    assert d["node_words"] == ["hot dog", "hot dog", "dog"]
    assert d["metrics"]["CHAIRi"] == pytest.approx(1 / 3)


@requires_nltk
def test_gt_cache_records_its_flavour(synthetic_root, tmp_path):
    ann = synthetic_root / "coco" / "annotations"
    inst, caps = [ann / "instances_val2014.json"], [ann / "captions_val2014.json"]
    gt_w = build_gt(inst, caps, "wordnet", tmp_path)
    gt_s = build_gt(inst, caps, "singularize", tmp_path)
    files = sorted(p.name for p in tmp_path.glob("chair_gt_*.json"))
    assert len(files) == 2 and files[0].startswith("chair_gt_singularize") and files[1].startswith("chair_gt_wordnet")
    assert gt_w.keys() == gt_s.keys()
    assert build_gt(inst, caps, "wordnet", tmp_path) == gt_w  # served from the cache


@requires_nltk
def test_protocol_scores_captions_of_the_synthetic_world(synthetic_root):
    proto = ChairProtocol()
    items = proto.items(synthetic_root)
    preds = [{"id": it.id, "text": "The image shows a dog, a dog and a giraffe."} for it in items]
    score = proto.score(preds, synthetic_root, n_boot=20)
    assert score["n"] == len(items) and score["metrics"]["chair_i"] > 0
    assert score["flavours"] == {"caption": "wordnet", "gt": "wordnet"}
    assert 0 <= score["ci"]["chair_s"][0] <= score["metrics"]["chair_s"] <= score["ci"]["chair_s"][1] <= 1


@requires_nltk
def test_chair_scores_500_captions_fast(benchmark, synthetic_root):
    proto = ChairProtocol()
    items = proto.items(synthetic_root)
    preds = [{"id": it.id, "text": "A dog and a cat sit on a couch next to a dining table with cups."} for it in items]
    preds = (preds * (500 // len(preds) + 1))[:500]
    gt = {it.meta["image_id"]: {"dog", "couch"} for it in items}

    def run():
        return [caption_details(p["text"], gt[int(p["id"])], "wordnet") for p in preds]

    out = benchmark(run)
    assert len(out) == 500
