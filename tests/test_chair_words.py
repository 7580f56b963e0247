"""CHAIR word processing: synonym parsing, two-word table, toilet/seat rule, Pattern-compatible singularize,
and the NLTK (WordNet-POS) flavour."""

import json

import pytest

from bench import nltk_data
from bench.errors import BenchError
from bench.io import sha256_file
from metrics import chair_words as cw
from tests.conftest import TEST_DATA

HAVE_NLTK = not nltk_data.missing(("tokenizer", "tagger", "wordnet"))
needs_nltk = pytest.mark.skipif(
    not HAVE_NLTK, reason="NLTK data (punkt_tab, averaged_perceptron_tagger_eng, wordnet) not found: set"
                          " BENCH_NLTK_DATA (CI: ../shared/reference/nltk_data) or run `python -m bench data fetch nltk`")


# ------------------------------------------------------------------------------------------ synonyms
def test_synonym_file_is_the_reference_copy():
    assert sha256_file(cw.SYNONYMS_FILE).startswith("b685537b36fe21b7")


def test_synonym_parsing_keeps_double_space_entries_unmatchable():
    voc = cw.vocabulary()
    assert " motor bike" in voc.surfaces and "motor bike" not in voc.surfaces
    assert " cheesecake" in voc.surfaces and "cheesecake" not in voc.surfaces
    assert voc.inverse[" motor bike"] == "motorcycle"


def test_iphone_is_a_surface_that_lowercased_text_never_matches():
    voc = cw.vocabulary()
    assert "iPhone" in voc.surfaces and "iphone" not in voc.surfaces
    words, _ = cw.merge_double_words(["an", "iphone", "and", "a", "phone"])
    assert cw.find_mentions(words, list(range(len(words))), voc).mentioned == ["phone"]


def test_eighty_head_words_map_to_themselves():
    voc = cw.vocabulary()
    assert len(voc.heads) == 80 and len(set(voc.heads)) == 80
    assert all(voc.inverse[h] == h for h in voc.heads)
    assert voc.inverse["ball"] == "sports ball" and voc.inverse["table"] == "dining table"
    assert voc.inverse["seat"] == "chair" and voc.inverse["people"] == "person"


def test_synonyms_wrapper_keeps_its_tuple_shape():
    surfaces, inverse = cw.synonyms()
    assert surfaces == cw.vocabulary().surfaces and inverse["kitten"] == "cat"


# ------------------------------------------------------------------------------------ two-word phrases
def test_double_word_table_has_the_55_reference_entries():
    assert len(cw.DOUBLE_WORDS) == 55
    assert cw.DOUBLE_WORDS["baby elephant"] == "elephant" and cw.DOUBLE_WORDS["adult cub"] == "cub"
    assert cw.DOUBLE_WORDS["passenger jet"] == "jet" and cw.DOUBLE_WORDS["passenger train"] == "train"
    assert cw.DOUBLE_WORDS["bow tie"] == "tie" and cw.DOUBLE_WORDS["toilet seat"] == "toilet"
    assert cw.DOUBLE_WORDS["wine glas"] == "wine glass" and cw.DOUBLE_WORDS["hot dog"] == "hot dog"


def test_merge_is_left_to_right_and_records_first_token_indices():
    merged, idxs = cw.merge_double_words(["a", "hot", "dog", "dog", "baby", "bear", "bear"])
    assert merged == ["a", "hot dog", "dog", "bear", "bear"]
    assert idxs == [0, 1, 3, 4, 6]


def test_motor_bike_merges_but_is_no_mention():
    merged, idxs = cw.merge_double_words(["a", "motor", "bike", "and", "a", "motorbike"])
    cap = cw.find_mentions(merged, idxs, cw.vocabulary())
    assert merged[1] == "motor bike" and cap.mentioned == ["motorbike"] and cap.nodes == ["motorcycle"]


def test_wine_glas_from_singularize_merges_into_wine_glass():
    words = [cw.singularize(w) for w in ["a", "wine", "glass", ",", "wine", "glasses", ",", "a", "glass"]]
    assert words[2] == "glas" and words[5] == "glass" and words[8] == "glas"
    merged, idxs = cw.merge_double_words(words)
    cap = cw.find_mentions(merged, idxs, cw.vocabulary())
    assert cap.mentioned == ["wine glass", "wine glass"]  # "wine glas" and "wine glass" both merge
    assert "glas" in merged  # a lone glass is no COCO object


# ------------------------------------------------------------------------------------ toilet / seat
def test_seat_is_a_chair_without_a_toilet():
    cap = cw.find_mentions(["a", "seat", "and", "a", "sink"], [0, 1, 2, 3, 4], cw.vocabulary())
    assert cap.nodes == ["chair", "sink"]


def test_toilet_drops_every_seat_and_shifts_later_indices_like_the_reference():
    merged = ["the", "seat", "of", "the", "toilet", "and", "a", "chair"]
    cap = cw.find_mentions(merged, list(range(len(merged))), cw.vocabulary())
    assert cap.mentioned == ["toilet", "chair"]
    # the reference indexes the unfiltered index list by position in the filtered list: 3 and 6, not 4 and 7
    assert cap.idxs == [3, 6]
    assert cap.raw_words == merged  # raw_words keep the seat


def test_duplicate_mentions_are_all_kept():
    merged = ["dog", ",", "dog", "and", "puppy"]
    cap = cw.find_mentions(merged, list(range(5)), cw.vocabulary())
    assert cap.nodes == ["dog", "dog", "dog"] and cap.idxs == [0, 2, 4]


# ------------------------------------------------------------------------------------- singularize
def _pattern_cases() -> dict:
    return json.loads((TEST_DATA / "chair" / "pattern_singularize_cases.json").read_text(encoding="utf-8"))["pairs"]


def test_singularize_equals_pattern_on_every_coco_word_synonym_and_plural():
    cases = _pattern_cases()
    assert len(cases) > 900
    wrong = {w: (cw.singularize(w), want) for w, want in cases.items() if cw.singularize(w) != want}
    assert not wrong


@pytest.mark.parametrize("word,singular", [
    ("buses", "bus"), ("bus", "bu"), ("glasses", "glass"), ("glass", "glas"), ("has", "ha"), ("people", "person"),
    ("women", "woman"), ("ties", "ty"), ("four", "fmy"), ("cookies", "cookies"), ("knives", "knife"),
    ("skiing", "skiing"), ("skis", "ski"), ("sheep", "sheep"), ("news", "news"), ("s", "s"), ("ice", "ice"),
    ("dogs'", "dog's"), ("'", "'s"), ("mothers-in-law", "mother-in-law"), ("t-shirts", "t-shirt"),
    ("spaghetti", "spaghettus"), ("slice", "slouse"), ("bases", "basis"), ("", ""),
])
def test_singularize_reproduces_pattern_quirks(word, singular):
    assert cw.singularize(word) == singular


def test_every_coco_plural_maps_back_to_a_surface_form():
    surfaces = cw.vocabulary().surfaces
    for plural in ["dogs", "cats", "cars", "trucks", "umbrellas", "benches", "sandwiches", "toothbrushes",
                   "knives", "giraffes", "zebras", "elephants", "laptops", "bottles", "chairs", "couches", "donuts",
                   "people", "children", "men", "women", "skis", "mice", "oxen"]:
        assert cw.singularize(plural) in surfaces, plural


def test_unknown_flavour_is_a_bench_error():
    with pytest.raises(BenchError, match="unknown CHAIR word-processing flavour 'lemma'"):
        cw.flavour_name("lemma")
    assert cw.flavour_name("wordnet_pos") == "wordnet" and cw.flavour_name("gt_singularize") == "singularize"


# ------------------------------------------------------------------------------------- with NLTK
@needs_nltk
def test_wordnet_flavour_lemmatises_with_pos_dining_becomes_din():
    cap = cw.caption_to_words("A family is dining at a dining table.", "wordnet")
    assert cap.raw_words[:4] == ["a", "family", "be", "din"]
    assert cap.mentioned == ["table"] and cap.nodes == ["dining table"]


@needs_nltk
def test_toilet_seat_caption_end_to_end_in_both_flavours():
    for flavour in ("wordnet", "singularize"):
        cap = cw.caption_to_words("The seat of the toilet is white, and there is a chair by the sink.", flavour)
        assert cap.mentioned == ["toilet", "chair", "sink"], flavour
        assert cap.idxs == [3, 11, 14], flavour  # shifted by the dropped seat (unshifted: 4, 12, 15)


@needs_nltk
def test_singularize_flavour_has_its_bus_quirk_and_wordnet_not():
    assert cw.caption_to_words("Two buses and a bus.", "singularize").nodes == ["bus"]  # "bus" → "bu"
    assert cw.caption_to_words("Two buses and a bus.", "wordnet").nodes == ["bus", "bus"]


@needs_nltk
def test_hot_dog_phrases_and_duplicates_in_a_caption():
    cap = cw.caption_to_words("A hot dog next to two hot dogs and a dog.", "wordnet")
    assert cap.nodes == ["hot dog", "hot dog", "dog"]


@needs_nltk
def test_fast_tagger_gives_nltk_pos_tag_results():
    import nltk
    from nltk.tag.perceptron import PerceptronTagger

    plain = PerceptronTagger()
    rows = [json.loads(line) for line in
            (TEST_DATA / "shared" / "reference" / "chair" / "opera_llava-1.5_greedy_captions.jsonl").open()][:60]
    rows += [json.loads(line) for line in (TEST_DATA / "shared" / "parity" / "chair" / "tricky_captions.jsonl").open()]
    for row in rows:
        tokens = cw.tokenize(row["caption"].lower())
        assert cw._tagger().tag(tokens) == plain.tag(tokens) == nltk.pos_tag(tokens)
