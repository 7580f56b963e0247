"""AMBER: the reference's generative and discriminative scoring, its printout, the protocols, bad input."""

import json
import shutil

import numpy as np
import pytest

from bench.errors import BenchError, DataError
from bench.parity import run_parity
from bench.registry import BENCHMARKS
from metrics.amber import (AmberData, counts_of, judge_generative, judge_responses, load_data, metrics_from_counts,
                           parse_answer, reference_printout)
from metrics.amber_similarity import NoSimilarity, SpacySimilarity, make_backend
from tests.conftest import TEST_DATA, requires_nltk

PARITY = TEST_DATA / "shared" / "parity" / "amber"


class PairSimilarity:
    """A stub backend: similar exactly for the listed (noun, word) pairs; records every question asked."""

    never = False
    name = "stub"

    def __init__(self, pairs):
        self.pairs, self.asked = set(pairs), []

    def similar(self, a, b):
        self.asked.append((a, b))
        return (a, b) in self.pairs


def tiny_data(annotations, association, safe=("light",)):
    vocab = frozenset(list(association) + [w for ws in association.values() for w in ws])
    return AmberData(tuple(annotations), association, frozenset(safe), vocab, {}, "test", {})


ASSOC = {"dog": ["puppy"], "cat": ["kitten"], "sofa": ["couch"], "light": [], "bird": [], "tree": ["forest"],
         "forest": ["tree"]}


# ------------------------------------------------------------------------------------------ parity
@requires_nltk
def test_copied_reference_fixtures_pass():
    results = run_parity(PARITY, TEST_DATA)
    assert {r.name for r in results} == {"amber/expected_visA.json", "amber/expected_visG.json"}
    assert all(r.ok for r in results), results


@requires_nltk
def test_fixtures_made_for_bench_pass():
    """tests/data/parity/amber: d, a, dr, da evaluation types and generative edge cases, made by the reference."""
    results = run_parity(TEST_DATA / "parity" / "amber", TEST_DATA)
    assert len(results) == 5 and all(r.ok for r in results), results


@requires_nltk
def test_a_wrong_expected_value_fails_with_its_key(tmp_path):
    shutil.copytree(PARITY, tmp_path / "amber")
    path = tmp_path / "amber" / "expected_visG.json"
    exp = json.loads(path.read_text())
    exp["metrics"]["Generative Task/Cog"] = 99.9
    path.write_text(json.dumps(exp))
    (res,) = [r for r in run_parity(tmp_path, TEST_DATA) if r.name.endswith("visG.json")]
    assert not res.ok and "Generative Task/Cog" in res.first_diff


# ------------------------------------------------------------------------------------------ generative
@requires_nltk
def test_association_word_marks_its_truth_word_and_safe_words_count_but_never_hallucinate():
    data = tiny_data([], ASSOC)
    rec = judge_generative("In this image there is a kitten, the light, a bird and the bird.", ["cat"], ["bird"],
                           data, NoSimilarity())
    assert rec["nouns"] == ["kitten", "light", "bird", "bird"]  # duplicates kept, vocabulary words only
    assert rec["hallucinated"] == ["bird", "bird"]
    assert (rec["covered"], rec["n_truth"], rec["cog"], rec["n_hallu"]) == (1, 1, 1, 1)
    assert rec["n_nouns"] == 4  # the global safe word "light" is in the denominator


@requires_nltk
def test_first_match_in_list_order_wins_as_in_the_reference():
    # "tree" is forest's association and a truth word itself: the association entry comes first in the safe
    # list, so a mention of "tree" marks "forest", not "tree"
    data = tiny_data([], ASSOC)
    rec = judge_generative("There is a tree.", ["forest", "tree"], [], data, NoSimilarity())
    assert rec["hallucinated"] == [] and rec["covered"] == 1 and rec["n_truth"] == 2


@requires_nltk
def test_similar_truth_word_saves_a_noun_and_similarity_is_asked_in_reference_order():
    data = tiny_data([], ASSOC)
    sim = PairSimilarity({("kitten", "dog")})
    rec = judge_generative("A kitten.", ["dog"], ["bird"], data, sim)
    assert rec["hallucinated"] == [] and rec["covered"] == 1
    # hallucination list first, then the safe list (associations before the words) up to the first hit
    assert sim.asked == [("kitten", "bird"), ("kitten", "puppy"), ("kitten", "dog")]
    rec = judge_generative("A kitten.", ["dog"], ["bird"], data, NoSimilarity())
    assert rec["hallucinated"] == ["kitten"] and rec["covered"] == 0


@requires_nltk
def test_response_without_nouns_is_not_hallucinated():
    data = tiny_data([], ASSOC)
    rec = judge_generative("", ["dog"], ["bird"], data, NoSimilarity())
    assert rec["n_nouns"] == 0 and rec["hallucinated"] == [] and rec["n_truth"] == 1


# ------------------------------------------------------------------------------------------ discriminative
def test_answer_matching_is_exact_yes_or_no():
    assert [parse_answer(t) for t in ("Yes", "No", "yes", "No.", " Yes", "no")] == ["yes", "no", None, None, None,
                                                                                     None]


def test_no_is_the_positive_class_and_breakdowns_sum_dimensions():
    recs = [{"task": "d", "dimension": d, "truth": t, "answer": a} for d, t, a in [
        ("existence", "no", "no"), ("existence", "yes", "no"), ("state", "no", None), ("number", "yes", "yes"),
        ("relation", "no", "yes")]]
    m = metrics_from_counts(sum(counts_of(r) for r in recs), ["d"], [])
    assert m["accuracy"] == pytest.approx(2 / 5)
    assert m["precision"] == pytest.approx(1 / 2) and m["recall"] == pytest.approx(1 / 3)
    assert m["existence/precision"] == 0.5 and m["attribute/accuracy"] == pytest.approx(1 / 2)
    assert m["relation/recall"] == 0.0


def test_reference_printout_uses_its_offsets_rounding_and_f1_epsilon():
    recs = [{"task": "d", "dimension": "existence", "truth": "no", "answer": "no"}] * 2 + \
           [{"task": "d", "dimension": "existence", "truth": "yes", "answer": "no"}]
    out = reference_printout(recs, "de")
    # precision 2 / (3.001) -> 66.6, recall 2 / 2.001 -> 100.0 (rounded), F1 from the rounded values with +0.001
    assert out["Exsitence/Precision"] == 66.6 and out["Exsitence/Recall"] == 100.0
    assert out["Exsitence/F1"] == round(2 * 0.666 * 1.0 / (0.666 + 1.0 + 0.001) * 100, 1)
    assert set(out) == {f"Exsitence/{k}" for k in ("Accuracy", "Precision", "Recall", "F1")}


def test_zero_denominators_give_zero_and_are_listed():
    zero = []
    m = metrics_from_counts(np.zeros(33, dtype=np.int64), ["g", "d"], zero)
    assert m["chair"] == 0.0 and "chair" in zero and "action/f1" in zero


@requires_nltk
def test_out_of_range_and_non_integer_ids_are_skipped_with_the_id():
    data = load_data()
    records, skipped = judge_responses([(0, "Yes"), (15221, "No"), ("x", "No"), (1005, "Yes")], data, NoSimilarity())
    assert [r["id"] for r in records] == [1005]
    assert set(skipped) == {"0", "15221", "x"} and "out of range" in skipped["15221"]


# ------------------------------------------------------------------------------------------ protocols
def test_nosim_variants_are_separate_protocols():
    full, nosim = BENCHMARKS.get("amber-g"), BENCHMARKS.get("amber-g-nosim")
    assert full.fingerprint() != nosim.fingerprint()
    assert full.params["similarity"].startswith("spacy") and nosim.params["similarity"] == "none"
    assert all("no sim" in label for label, _ in nosim.headline.values())
    assert BENCHMARKS.get("amber-d").params["tasks"] == ["d"] and BENCHMARKS.get("amber").params["tasks"] == ["g", "d"]


def test_shipped_data_is_the_released_data():
    data = load_data()
    assert len(data.annotations) == 15220 and len(data.queries) == 15220
    assert sum(r["type"] == "generative" for r in data.annotations) == 1004
    assert data.queries[1] == {"image": "AMBER_1.jpg", "query": "Describe this image."}


def test_spacy_backend_reports_what_is_missing():
    msgs = SpacySimilarity("no_such_model_xyz").missing()
    assert msgs and ("spacy" in msgs[0].lower()) and ("no_such_model_xyz" in msgs[0] or "pip install" in msgs[0])
    with pytest.raises(BenchError, match="unknown AMBER similarity backend"):
        make_backend("word2vec")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from bench.data.synthetic import prepare_synthetic

    root = tmp_path_factory.mktemp("amber_world")
    prepare_synthetic(root, seed=0, n_train=40, n_eval=12, n_pref=24)
    return root


def test_protocol_needing_spacy_refuses_before_generation_when_absent(world, monkeypatch):
    monkeypatch.setattr(SpacySimilarity, "missing", lambda self: ["spaCy model en_core_web_lg is not installed"])
    bench = BENCHMARKS.get("amber-g")()
    assert any("en_core_web_lg" in m for m in bench.missing_resources(world))
    assert BENCHMARKS.get("amber-g").missing_resources(world) == bench.missing_resources(world)  # class-callable
    with pytest.raises(BenchError, match="amber-g-nosim"):
        bench.items(world)
    with pytest.raises(BenchError, match="en_core_web_lg"):
        bench.score([], world)


def test_synthetic_rows_leave_the_glyph_world_unchanged(world):
    from bench.data.synthetic_amber import ensure_amber, ensure_objhal

    before = {p: p.read_bytes() for p in world.rglob("*") if p.is_file()}
    ensure_amber(world)
    ensure_objhal(world)
    after = {p: p.read_bytes() for p in before}
    assert before == after
    ann = json.loads((world / "amber" / "annotations.json").read_text())
    assert [r["id"] for r in ann] == list(range(1, len(ann) + 1))
    assert sum(r["type"] == "generative" for r in ann) == 12 and len(ann) == 12 * 7
    kinds = {r["type"] for r in ann}
    assert {"discriminative-hallucination", "discriminative-attribute-state", "discriminative-attribute-number",
            "discriminative-attribute-action", "discriminative-relation"} <= kinds
    first = (world / "amber" / "annotations.json").read_bytes()
    ensure_amber(world)  # idempotent
    assert (world / "amber" / "annotations.json").read_bytes() == first


@requires_nltk
def test_score_on_the_synthetic_world_reports_bad_ids_and_missing_items(world):
    bench = BENCHMARKS.get("amber-nosim")()
    items = bench.items(world)
    ann = json.loads((world / "amber" / "annotations.json").read_text())
    preds = []
    for it in items[1:]:
        row = ann[int(it.id) - 1]
        text = ("The image shows a " + " and a ".join(row["truth"]) + "." if row["type"] == "generative"
                else "Yes" if row["truth"] == "yes" else "No")
        preds.append({"id": it.id, "text": text})
    preds += [{"id": "99999", "text": "Yes"}, {"id": "abc", "text": "No"}]
    score = bench.score(preds, world, n_boot=50)
    reasons = score["skipped"]["reasons"]
    assert reasons[items[0].id] == "no prediction" and "not an AMBER id" in reasons["99999"]
    assert "abc" in reasons and score["skipped"]["count"] == 3
    assert score["metrics"]["accuracy"] == 1.0 and score["metrics"]["hal"] < 1.0
    assert score["n"] == len(items) - 1 and score["images"] == 12 and score["similarity"] == "none"
    assert set(score["ci"]) >= {"chair", "cover", "accuracy", "f1"}
    assert "Generative Task/CHAIR" in score["printed"] and "Relation/F1" in score["printed"]
    # the generative-only protocol does not take discriminative ids
    g = BENCHMARKS.get("amber-g-nosim")().score(preds, world, n_boot=10)
    assert any(v == "id not in protocol amber-g-nosim" for v in g["skipped"]["reasons"].values())
    assert set(g["metrics"]) == {"chair", "cover", "hal", "cog"}


@requires_nltk
def test_paired_units_rebuild_the_metrics_from_details(world):
    bench = BENCHMARKS.get("amber-nosim")()
    preds = [{"id": it.id, "text": "No" if int(it.id) % 2 else "The image shows a dog and a cup."}
             for it in bench.items(world)]
    score = bench.score(preds, world, n_boot=10)
    units, statistic = bench.paired_units(score)
    assert len(units) == 12
    again = statistic(np.sum(list(units.values()), axis=0))
    for key, value in score["metrics"].items():
        assert again[key] == pytest.approx(value), key


def test_annotations_with_ids_out_of_order_are_rejected(tmp_path):
    folder = tmp_path / "amber"
    folder.mkdir()
    (folder / "annotations.json").write_text(json.dumps([{"id": 2, "type": "generative", "truth": [], "hallu": []}]))
    for name, text in (("relation.json", "{}"), ("safe_words.txt", ""), ("query_all.json", "[]")):
        (folder / name).write_text(text)
    with pytest.raises(DataError, match="annotations\\[id - 1\\]"):
        load_data(folder)


@requires_nltk
def test_spacy_backend_with_a_vectors_model_saves_a_near_synonym(tmp_path):
    """Runs only where spaCy is installed (the `amber` extra); a tiny vectors-only model stands in for
    en_core_web_lg (a saved model folder is accepted wherever a package name is)."""
    spacy = pytest.importorskip("spacy", reason="spaCy not installed (pip install '.[amber]')")
    nlp = spacy.blank("en")
    for word, vec in {"cat": [1, 0, 0], "kitten": [0.95, 0.1, 0], "dog": [0, 1, 0]}.items():
        nlp.vocab.set_vector(word, np.array(vec, dtype="float32"))
    nlp.to_disk(tmp_path / "model")
    sim = make_backend(f"spacy:{tmp_path / 'model'}", 0.8)
    assert sim.missing() == [] and sim.similar("kitten", "cat") and not sim.similar("kitten", "dog")
    data = tiny_data([], {"cat": [], "dog": [], "kitten": [], "bird": []}, safe=())
    rec = judge_generative("In this image there is a kitten and a bird.", ["cat"], ["dog"], data, sim)
    assert rec["hallucinated"] == ["bird"] and rec["covered"] == 1


@requires_nltk
def test_a_missing_image_is_reported_with_its_id_in_the_score_file(world, tmp_path):
    """The engine skips an item whose image is missing ({id: "image not found: ..."}); the harness merges that
    into the score file's ``skipped`` and everything else is scored."""
    from bench.io import read_json, write_jsonl
    from bench.pipeline import EvalConfig, score_predictions

    bench = BENCHMARKS.get("amber-d")()
    items = bench.items(world)
    lost = items[3]
    preds = [{"id": it.id, "text": "No", "key": "k"} for it in items if it.id != lost.id]
    write_jsonl(tmp_path / "pred.jsonl", preds)
    score = score_predictions(bench, tmp_path / "pred.jsonl", world, tmp_path / "scores" / "amber-d.json",
                              EvalConfig(n_boot=10), {lost.id: f"image not found: {lost.image}"})
    on_disk = read_json(tmp_path / "scores" / "amber-d.json")
    assert on_disk["skipped"] == {"count": 1, "reasons": {lost.id: f"image not found: {lost.image}"}}
    assert score["n"] == len(items) - 1 and on_disk["protocol"] == "amber-d"
