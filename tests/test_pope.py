import pytest

from bench.errors import DataError
from metrics.pope import PARSERS, PopeProtocol, confusion, metrics_from_confusion, parse_official, parse_opera


@pytest.mark.parametrize("text,official,opera", [
    ("Yes", "yes", "yes"), ("No.", "no", "no"), ("NO", "yes", "no"), ("Nope", "yes", "yes"),
    ("There isn't a dog.", "yes", "no"), ("No\nThere is a dog.", "yes", "yes"),  # newline stays inside the token
    ("Yes, there is a cat. There is no dog.", "yes", "no"), ("", "yes", "yes"), ("no,", "no", "no"),
    ("Not at all.", "yes", "yes"), ("There is not a dog", "no", "no"), ("yes!", "yes", "yes"),
])
def test_parsers_follow_their_references(text, official, opera):
    assert parse_official(text) == official
    assert parse_opera(text) == opera


def test_exact_parser_separates_other_answers():
    assert [PARSERS["exact"](t) for t in ("Yes", " no ", "Yes.", "maybe")] == ["yes", "no", "other", "other"]


def test_zero_division_is_guarded_and_reported():
    m = metrics_from_confusion(confusion(["yes", "no"], ["no", "no"]), n=2)
    assert m["precision"] == 0.0 and m["f1"] == 0.0 and m["yes_ratio"] == 0.0
    assert set(m["zero_division"]) == {"precision", "f1"}


def test_yes_ratio_comes_from_predictions():
    m = metrics_from_confusion(confusion(["yes", "yes", "no", "no"], ["yes", "yes", "yes", "no"]), n=4)
    assert m["yes_ratio"] == 0.75 and m["accuracy"] == 0.75


def test_protocol_scores_stored_predictions_per_split(synthetic_root):
    proto = PopeProtocol()
    items = proto.items(synthetic_root)
    assert {it.meta["split"] for it in items} == {"random", "popular", "adversarial"}
    preds = [{"id": it.id, "text": "Yes" if it.meta["label"] == "yes" else "No"} for it in items]
    preds = preds[:-1]  # one missing prediction is reported, not silently dropped
    score = proto.score(preds, synthetic_root, n_boot=50)
    assert score["metrics"]["random/accuracy"] == 1.0
    assert score["skipped"]["count"] == 1
    assert score["metrics"]["adversarial/accuracy"] < 1.0  # the missing answer is scored as wrong
    lo, hi = score["ci"]["popular/f1"]
    assert lo <= score["metrics"]["popular/f1"] <= hi


def test_real_v1_file_under_v3_protocol_is_refused(tmp_path):
    import shutil

    from tests.conftest import TEST_DATA

    (tmp_path / "pope" / "v3").mkdir(parents=True)
    src = TEST_DATA / "shared" / "reference" / "pope" / "coco_pope_random.json"
    shutil.copy(src, tmp_path / "pope" / "v3" / "coco_pope_random.json")
    proto = type("P", (PopeProtocol,), {"params": {**PopeProtocol.params, "question_version": "v1",
                                                     "splits": ["random"]}})()
    (tmp_path / "pope" / "v1").mkdir()
    shutil.copy(src, tmp_path / "pope" / "v1" / "coco_pope_random.json")
    with pytest.raises(DataError, match="v3 question file but protocol"):
        proto.score([], tmp_path, n_boot=0)


def test_malformed_question_line_names_file_and_line(tmp_path):
    from metrics.pope import read_questions

    path = tmp_path / "q.json"
    path.write_text('{"question_id": 1, "image": "a.jpg", "text": "Is there a dog?", "label": "yes"}\n'
                    '{"question_id": 2, "image": "a.jpg", "text": "Is there a cat?", "label": "maybe"}\n')
    with pytest.raises(DataError, match=r"q.json:2 field 'label'"):
        read_questions(path)


def test_pope_scores_9000_answers_fast(benchmark):
    """pytest-benchmark figure for scoring 9000 answers (3 splits x 3000) with the official parser."""
    from metrics.pope import score_split

    texts = ["Yes", "No, there is not.", "There is a dog. No cat.", "no"] * 750
    labels = ["yes", "no", "yes", "no"] * 750
    out = benchmark(lambda: [score_split(labels, texts) for _ in range(3)])
    assert out[0]["confusion"]["TP"] == 1500 and out[0]["accuracy"] == 1.0
