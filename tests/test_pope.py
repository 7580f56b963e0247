"""POPE: parsers, confusion/metrics with the zero-division guard, id joining, and the registered protocols."""

import json
import shutil
from pathlib import Path

import pytest

from bench.errors import DataError
from bench.registry import BENCHMARKS
from metrics.pope import (KNOWN_SHA256, PARSERS, SUFFIX_ONE_WORD, confusion, join_answers, metrics_from_confusion,
                          normalise_exact, parse_exact, parse_official, parse_opera, read_questions, reference_printout,
                          score_answers)
from tests.conftest import TEST_DATA

PARITY = TEST_DATA / "shared" / "parity" / "pope"
V3_RANDOM = TEST_DATA / "shared" / "reference" / "pope" / "coco_pope_random.json"


# ------------------------------------------------------------------------------------------- parsers
def test_parsers_agree_with_every_row_of_the_reference_phrasing_table():
    rows = json.loads((PARITY / "phrasings.json").read_text())["rows"]
    assert len(rows) > 500
    for row in rows:
        assert parse_official(row["text"]) == row["official"] == row["llava"], row["text"]
        assert parse_opera(row["text"]) == row["opera"], row["text"]
        assert normalise_exact(row["text"]) == row["lmms_eval_pred"], row["text"]


@pytest.mark.parametrize("text,official,opera,exact", [
    ("Yes", "yes", "yes", "yes"),
    ("No.", "no", "no", "other"),
    ("NO", "yes", "no", "no"),                      # official only knows 'No'/'no'/'not'
    ("Nope", "yes", "yes", "other"),
    ("There isn't a dog.", "yes", "no", "other"),   # OPERA counts n't
    ("No\nThere is a dog.", "yes", "yes", "other"),  # single-space split: 'No\nThere' is one word
    ("no\tthere is a dog", "yes", "yes", "other"),    # the tab keeps 'no\tthere' one word
    ("no\tthere is no dog", "no", "no", "other"),     # ... so only the later 'no' counts
    ("Yes, there is a cat. There is no dog.", "yes", "no", "other"),  # official keeps the first sentence only
    ("", "yes", "yes", "other"),
    ("no,", "no", "no", "other"),
    ("Not at all.", "yes", "yes", "other"),         # 'Not' is not 'not'
    ("There is not a dog", "no", "no", "other"),
    ("yes!", "yes", "yes", "other"),
    ("  yes \n", "yes", "yes", "yes"),
    ("n't", "yes", "no", "other"),
])
def test_parser_rules_on_adversarial_strings(text, official, opera, exact):
    assert PARSERS["official"](text) == official
    assert PARSERS["opera"](text) == opera
    assert PARSERS["exact"](text) == exact


def test_exact_parser_tracks_answers_that_are_neither_yes_nor_no():
    preds = [parse_exact(t) for t in ("Yes", " no ", "Yes.", "maybe")]
    c = confusion(["yes", "no", "yes", "no"], preds)
    assert c == {"TP": 1, "FP": 0, "TN": 1, "FN": 0, "other": 2}
    m = metrics_from_confusion(c)
    assert m["accuracy"] == 0.5 and m["precision"] == 1.0 and m["n"] == 4  # other answers are wrong, outside P/R


# ------------------------------------------------------------------------------------------- metrics
def test_zero_division_returns_zero_and_names_each_guarded_metric():
    m = metrics_from_confusion(confusion(["yes", "no"], ["no", "no"]))
    assert (m["precision"], m["recall"], m["f1"], m["yes_ratio"], m["accuracy"]) == (0.0, 0.0, 0.0, 0.0, 0.5)
    assert m["zero_division"] == ["precision", "f1"]
    m = metrics_from_confusion(confusion(["no", "no"], ["no", "yes"]))  # no yes labels: recall 0/0
    assert m["precision"] == 0.0 and m["zero_division"] == ["recall", "f1"]
    empty = metrics_from_confusion({"TP": 0, "FP": 0, "TN": 0, "FN": 0})
    assert empty["zero_division"] == ["precision", "recall", "f1", "accuracy", "yes_ratio"]


def test_metrics_match_hand_computation_and_yes_ratio_comes_from_predictions():
    c = confusion(["yes", "yes", "no", "no"], ["yes", "yes", "yes", "no"])
    m = metrics_from_confusion(c)
    assert c == {"TP": 2, "FP": 1, "TN": 1, "FN": 0, "other": 0}
    assert m["accuracy"] == 0.75 and m["precision"] == 2 / 3 and m["recall"] == 1.0
    assert m["f1"] == 2 * (2 / 3) / (2 / 3 + 1) and m["yes_ratio"] == 0.75 and m["zero_division"] == []
    assert metrics_from_confusion(c, yes_ratio_from="labels", n_label_yes=2)["yes_ratio"] == 0.5  # lmms-eval compat


def test_confusion_refuses_misaligned_lists():
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        confusion(["yes", "no"], ["yes", "no", "no"])


def test_reference_printout_reproduces_the_scripts_and_their_crash():
    exp = json.loads((PARITY / "expected_edge_mixed_small.json").read_text())["parsers"]["llava"]
    c = {**exp["confusion"], "other": 0}
    assert reference_printout(c, metrics_from_confusion(c), llava_line=True) == exp["printed"]
    crashed = json.loads((PARITY / "expected_edge_all_no.json").read_text())["parsers"]["official"]
    assert reference_printout({**crashed["confusion"], "other": 0}, None) == crashed["printed"]


# ------------------------------------------------------------------------------------------- joining
QS = [{"question_id": i, "image": "a.jpg", "text": "Is there a dog?", "label": lab}
      for i, lab in enumerate(["yes", "no", "yes"], start=1)]


def test_answers_are_joined_by_question_id_not_position():
    answers = [{"question_id": 3, "text": "Yes"}, {"question_id": 1, "text": "Yes"}, {"question_id": 2, "text": "No"}]
    out = score_answers(QS, answers)
    assert out["confusion"]["TP"] == 2 and out["confusion"]["TN"] == 1 and out["join"]["ok"]
    assert "not in question-file order" in out["join"]["notes"][0]


def test_id_mismatch_is_reported_not_zipped():
    answers = [{"question_id": 1, "text": "Yes"}, {"question_id": 7, "text": "No"}, {"question_id": 1, "text": "No"}]
    j = join_answers(QS, answers)
    assert not j.ok and j.unanswered == [2, 3] and j.unknown == [7] and j.duplicates == [1]
    assert j.problem().startswith("2 questions without an answer (first: 2)")
    assert [q["question_id"] for q, _ in j.pairs] == [1]


def test_answers_without_ids_fall_back_to_position_and_say_so():
    j = join_answers(QS, [{"text": "Yes"}, {"text": "No"}])
    assert j.mode == "position" and "file position" in j.notes[0]
    assert not j.ok and j.unanswered == [3]  # a count mismatch is still reported
    assert join_answers(QS, [{"text": t} for t in ("Yes", "No", "Yes")]).ok


# ------------------------------------------------------------------------------------------- protocols
def _tiny_root(tmp_path: Path, version: str = "v3") -> Path:
    """Three splits × 2 images × 2 questions, hand-made (not real POPE files)."""
    d = tmp_path / "pope" / version
    d.mkdir(parents=True)
    for split in ("random", "popular", "adversarial"):
        rows = [{"question_id": 1, "image": "COCO_val2014_1.jpg", "text": "Is there a dog in the image?", "label": "yes"},
                {"question_id": 2, "image": "COCO_val2014_1.jpg", "text": f"Is there a {split} cat in the image?",
                 "label": "no"},
                {"question_id": 3, "image": "COCO_val2014_2.jpg", "text": "Is there a car in the image?", "label": "yes"},
                {"question_id": 4, "image": "COCO_val2014_2.jpg", "text": "Is there a bus in the image?", "label": "no"}]
        (d / f"coco_pope_{split}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def test_every_protocol_is_a_registered_declaration():
    expect = {"pope": ("v3", "official", "", 512), "pope-v1": ("v1", "official", "", 512),
              "pope-llava15": ("v1", "official", SUFFIX_ONE_WORD, 128), "pope-hadpo": ("v3", "official", "", 512),
              "pope-opera": ("v3", "opera", "", 10), "pope-lmms": ("v3", "exact", SUFFIX_ONE_WORD, 128)}
    for name, (version, parser, suffix, tokens) in expect.items():
        cls = BENCHMARKS.get(name)
        p = cls.params
        assert cls.name == name and cls.benchmark == "pope"
        assert (p["question_version"], p["parser"], p["suffix"], cls.generation.max_new_tokens) == (
            version, parser, suffix, tokens)
        assert p["question_sha256"] == KNOWN_SHA256[version] and cls.generation.num_beams == 1
        assert not cls.generation.do_sample
    assert BENCHMARKS.get("pope-hadpo").params["report_rounding"] == "truncate2"
    assert BENCHMARKS.get("pope").fingerprint() != BENCHMARKS.get("pope-hadpo").fingerprint()


def test_items_read_the_jsonl_question_files(tmp_path):
    root = _tiny_root(tmp_path)
    items = BENCHMARKS.get("pope")().items(root)
    assert len(items) == 12 and items[0].id == "random/1" and items[-1].id == "adversarial/4"
    assert items[0].image == str(root / "coco" / "val2014" / "COCO_val2014_1.jpg")
    assert items[0].question == "Is there a dog in the image?"
    assert items[1].meta == {"split": "random", "label": "no", "image_key": "COCO_val2014_1.jpg"}
    lmms = BENCHMARKS.get("pope-lmms")().items(root)
    assert lmms[0].question == "Is there a dog in the image?\nAnswer the question using a single word or phrase."


def test_score_reports_per_split_metrics_skips_and_empty_generations(tmp_path):
    root = _tiny_root(tmp_path)
    proto = BENCHMARKS.get("pope")()
    preds = [{"id": it.id, "text": "Yes" if it.meta["label"] == "yes" else "No, there is not."}
             for it in proto.items(root)]
    preds = [p for p in preds if p["id"] != "popular/4"]          # missing: skipped, not scored
    for p in preds:
        if p["id"] == "adversarial/2":
            p["text"] = ""                                        # empty: official parser reads yes
    preds.append({"id": "random/99", "text": "Yes"})              # unknown id: reported
    s = proto.score(preds, root, n_boot=50)
    m = s["metrics"]
    assert m["random/accuracy"] == 1.0 and m["random/yes_ratio"] == 0.5
    assert m["popular/accuracy"] == 1.0 and s["confusion"]["popular"]["TN"] == 1  # 3 scored
    assert m["adversarial/accuracy"] == 0.75 and m["adversarial/precision"] == 2 / 3
    assert m["mean/f1"] == pytest.approx((1 + 1 + 0.8) / 3)
    assert s["n"] == 11 and s["skipped"]["missing"] == 1 and s["skipped"]["empty"] == 1
    assert s["skipped"]["reasons"]["popular/4"].startswith("no prediction")
    assert s["empty_generations"] == {"count": 1, "ids": ["adversarial/2"]}
    assert s["unmatched_predictions"]["ids"] == ["random/99"]
    row = next(r for r in s["details"]["per_item"] if r["id"] == "adversarial/2")
    assert row["label"] == "no" and row["parsed"] == "yes" and row["image"].endswith(".jpg")
    lo, hi = s["ci"]["adversarial/accuracy"]
    assert lo <= m["adversarial/accuracy"] <= hi
    assert s["question_files"]["random"]["status"].startswith("unrecognised")


def test_zero_division_in_a_split_is_guarded_in_the_score(tmp_path):
    root = _tiny_root(tmp_path)
    proto = BENCHMARKS.get("pope-opera")()
    s = proto.score([{"id": it.id, "text": "No"} for it in proto.items(root)], root, n_boot=20)
    assert s["metrics"]["random/precision"] == 0.0 and s["zero_division"]["random"] == ["precision", "f1"]


def test_bootstrap_resamples_images_with_all_their_questions(tmp_path, monkeypatch):
    import metrics.pope as pope_mod

    root = _tiny_root(tmp_path)
    proto = BENCHMARKS.get("pope")()
    # image 1 answered right, image 2 always wrong: resampling whole images gives random/accuracy 0, 0.5 or 1
    # only — resampling single questions would also give 0.25 and 0.75.
    preds = [{"id": it.id, "text": ("Yes" if it.meta["label"] == "yes" else "No")
              if it.meta["image_key"].endswith("_1.jpg") else ("No" if it.meta["label"] == "yes" else "Yes")}
             for it in proto.items(root)]
    seen = []
    real = pope_mod.bootstrap_ci

    def spy(units, statistic, **kw):
        def recording(sample):
            out = statistic(sample)
            seen.append(out["random/accuracy"])
            return out
        assert len(units) == 2  # two images
        return real(units, recording, **kw)

    monkeypatch.setattr(pope_mod, "bootstrap_ci", spy)
    s = proto.score(preds, root, n_boot=200)
    assert len(seen) == 200 and set(seen) == {0.0, 0.5, 1.0}
    assert s["ci"]["random/accuracy"] == [0.0, 1.0] and s["metrics"]["random/accuracy"] == 0.5


def test_real_file_of_the_other_version_is_refused(tmp_path):
    (tmp_path / "pope" / "v1").mkdir(parents=True)
    for split in ("random", "popular", "adversarial"):
        shutil.copy(V3_RANDOM, tmp_path / "pope" / "v1" / f"coco_pope_{split}.json")
    with pytest.raises(DataError, match="real POPE v3 random question file, but protocol 'pope-v1' expects v1"):
        BENCHMARKS.get("pope-v1")().score([], tmp_path, n_boot=0)


def test_real_v3_file_is_verified_by_sha256(tmp_path):
    proto = type("OneSplit", (BENCHMARKS.get("pope"),), {"params": {**BENCHMARKS.get("pope").params,
                                                                      "splits": ["random"]}})()
    (tmp_path / "pope" / "v3").mkdir(parents=True)
    shutil.copy(V3_RANDOM, tmp_path / "pope" / "v3" / "coco_pope_random.json")
    items = proto.items(tmp_path)
    assert len(items) == 3000
    s = proto.score([{"id": it.id, "text": "Yes"} for it in items], tmp_path, n_boot=0)
    assert s["question_files"]["random"]["status"] == "real POPE v3 random (sha256 verified)"
    assert s["metrics"]["random/yes_ratio"] == 1.0 and s["metrics"]["random/recall"] == 1.0


def test_data_files_are_the_question_files(tmp_path):
    files = BENCHMARKS.get("pope-llava15")().data_files(tmp_path)
    assert [f.relative_to(tmp_path).as_posix() for f in files] == [
        f"pope/v1/coco_pope_{s}.json" for s in ("random", "popular", "adversarial")]


def test_malformed_question_line_names_file_and_line(tmp_path):
    path = tmp_path / "q.json"
    path.write_text('{"question_id": 1, "image": "a.jpg", "text": "Is there a dog?", "label": "yes"}\n'
                    '{"question_id": 2, "image": "a.jpg", "text": "Is there a cat?", "label": "maybe"}\n')
    with pytest.raises(DataError, match=r"q.json:2 field 'label'"):
        read_questions(path)
    path.write_text('{"question_id": 1, "image": "a.jpg", "text": "?", "label": "yes"}\n{"question_id": 1, "image"')
    with pytest.raises(DataError, match=r"q.json:2"):
        read_questions(path)


def test_synthetic_world_scores_under_the_default_protocol(synthetic_root):
    proto = BENCHMARKS.get("pope")()
    items = proto.items(synthetic_root)
    assert {it.meta["split"] for it in items} == {"random", "popular", "adversarial"}
    s = proto.score([{"id": it.id, "text": "Yes" if it.meta["label"] == "yes" else "No"} for it in items],
                    synthetic_root, n_boot=20)
    assert all(s["metrics"][f"{sp}/accuracy"] == 1.0 for sp in ("random", "popular", "adversarial"))
    assert s["skipped"]["count"] == 0 and s["n"] == len(items)
