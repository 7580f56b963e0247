"""MHaluBench: label parsing, multi-claim output parsing, sklearn-equivalent metrics, the two protocols."""

import json
import random

import pytest

from bench.errors import DataError
from bench.registry import BENCHMARKS
from metrics.mhalubench import (LABELS, UNPARSEABLE, apply_policy, classification_metrics, parse_detector_output,
                                parse_label, parse_label_strict, segment_labels)
from tests.conftest import TEST_DATA

H, N, U = "hallucination", "non-hallucination", UNPARSEABLE


# ------------------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("raw,strict,lenient", [
    ("Hallucination", H, H), (" non hallucination ", N, N), ("NON_HALLUCINATION", N, N),
    ("hallucination\n", H, H), ("non-hallucination.", U, N), ('"hallucination"', U, H),
    ("This claim is a hallucination.", U, H), ("This claim is not a hallucination.", U, N),
    ("There is no hallucination here", U, N), ("hallucinated", U, U), ("nonhallucination", U, N),
    ("hallucination or non-hallucination", U, U), ("", U, U), ("yes", U, U), ("N/A", U, U),
])
def test_detector_label_parsing(raw, strict, lenient):
    assert parse_label_strict(raw) == strict
    assert parse_label(raw) == lenient


def test_strict_parser_agrees_with_the_parity_fixture():
    rows = [json.loads(line) for line in (TEST_DATA / "shared" / "parity" / "mhalubench" / "claims.jsonl").open()]
    exp = {(p["id"], p["claim_index"]): p["parsed"] for p in
           json.loads((TEST_DATA / "shared" / "parity" / "mhalubench" / "expected.json").read_text())["parsed"]}
    assert all(parse_label_strict(r["raw_prediction"]) == exp[(r["id"], r["claim_index"])] for r in rows)


@pytest.mark.parametrize("text,n,want", [
    ('[{"claim1":"hallucination","reason":"x"},{"claim2":"non-hallucination","reason":"y"}]', 2, [H, N]),
    ('Output:\n[\n {"claim2": "Hallucination", "reason": "r"},\n {"claim1": "non hallucination"}\n]', 2, [N, H]),
    ("[{'claim1': 'hallucination', 'reason': 'it is'}]", 2, [H, U]),          # python literal; claim2 missing
    ('{"claim1": "non-hallucination", "claim2": "hallucination"}', 2, [N, H]),
    ('[{"label": "hallucination"}, {"label": "non-hallucination"}]', 2, [H, N]),
    ('["hallucination", "non-hallucination", "maybe"]', 3, [H, N, U]),
    ("claim1: hallucination\nclaim2: non-hallucination\nclaim 3 - Non_Hallucination", 3, [H, N, N]),
    ("The first is a hallucination, the second is non-hallucination.", 2, [H, N]),   # labels in order
    ("non-hallucination", 1, [N]), ("I cannot tell.", 2, [U, U]), ("", 1, [U]),
    ('[{"claim1": "hallucination"', 1, [H]),                                  # truncated JSON: the line rule
    ('[{"claim7": "hallucination"}]', 2, [U, U]),                             # out-of-range claim ignored
])
def test_multi_claim_output_parsing(text, n, want):
    assert parse_detector_output(text, n) == want


# ------------------------------------------------------------------------------------------- metrics
def test_macro_metrics_with_an_unpredicted_class_follow_sklearn_zero_division_0():
    m = classification_metrics([H, N], [H, H])
    assert m["per_class"][N]["precision"] == 0.0 and "precision:non-hallucination" in m["zero_division"]
    assert m["accuracy"] == 0.5 and m["macro_precision"] == pytest.approx(0.25)
    assert m["macro_recall"] == 0.5 and m["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["per_class"][H]["support"] == 1 and m["per_class"][N]["support"] == 1


def test_unparseable_is_wrong_for_accuracy_a_miss_for_recall_and_no_class_for_precision():
    gold, pred = [H, H, N, N], [H, U, N, U]
    m = classification_metrics(gold, pred)
    assert m["accuracy"] == 0.5
    assert m["per_class"][H] == {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    assert apply_policy(gold, pred, "unparseable_as_non_hallucination")[1] == [H, N, N, N]
    assert apply_policy(gold, pred, "unparseable_excluded") == ([H, N], [H, N])
    with pytest.raises(ValueError, match="unknown policy"):
        apply_policy(gold, pred, "drop")


def test_empty_input_is_guarded():
    m = classification_metrics([], [])
    assert m["accuracy"] == 0.0 and "accuracy" in m["zero_division"] and m["n_claims"] == 0


def test_metrics_equal_scikit_learn_on_random_labels():
    sk = pytest.importorskip("sklearn.metrics", reason="scikit-learn not installed (optional cross-check)")
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 12)
        gold = [rng.choice(LABELS) for _ in range(n)]
        pred = [rng.choice(LABELS + (U,)) for _ in range(n)]
        p, r, f, _ = sk.precision_recall_fscore_support(gold, pred, labels=list(LABELS), average="macro",
                                                        zero_division=0)
        m = classification_metrics(gold, pred)
        assert m["accuracy"] == pytest.approx(sk.accuracy_score(gold, pred), abs=1e-12)
        assert (m["macro_precision"], m["macro_recall"], m["macro_f1"]) == pytest.approx((p, r, f), abs=1e-12)


def test_segment_label_is_hallucination_if_any_claim_is():
    assert segment_labels([N, H]) == H and segment_labels([N, N]) == N and segment_labels([N, U]) == U
    assert segment_labels([U, H]) == H


# ------------------------------------------------------------------------------------------- protocols
def _tiny_root(tmp_path):
    recs = [
        {"id": "a", "image_path": "imgs/a.png", "task_type": "image-to-text",
         "claims": [{"claim": "There is a dog.", "label": H, "segment": 0},
                    {"claim": "There is a cat.", "label": N, "segment": 0},
                    {"claim": "The cat is black.", "label": N, "segment": 1}]},
        {"id": "b", "image_path": "imgs/b.png", "task_type": "text-to-image",
         "claim_list": ["A red bus.", "Two people."], "ref_claim_label": [N, H]},
    ]
    (tmp_path / "mhalubench").mkdir()
    (tmp_path / "mhalubench" / "claims.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return tmp_path


def test_claim_protocol_items_use_the_prompt_template(tmp_path):
    root = _tiny_root(tmp_path)
    proto = BENCHMARKS.get("mhalubench")()
    items = proto.items(root)
    assert [it.id for it in items] == ["a/0", "a/1", "a/2", "b/0", "b/1"]
    assert items[0].image == str(root / "imgs" / "a.png")
    assert items[0].question == proto.params["prompt"].format(claim="There is a dog.")
    assert '"There is a dog."' in items[0].question and items[3].meta["gold"] == N
    assert proto.data_files(root) == [root / "mhalubench" / "claims.jsonl"]


def test_claim_protocol_scores_claim_and_segment_levels_per_task_type(tmp_path):
    root = _tiny_root(tmp_path)
    proto = BENCHMARKS.get("mhalubench")()
    preds = [{"id": "a/0", "text": "hallucination"}, {"id": "a/1", "text": "Hallucination."},
             {"id": "a/2", "text": "no idea"}, {"id": "b/0", "text": "non-hallucination"}]  # b/1 missing
    s = proto.score(preds, root, n_boot=50)
    m = s["metrics"]
    # claims scored: a/0 H→H, a/1 N→H, a/2 N→U, b/0 N→N (b/1 skipped)
    assert m["claim/accuracy"] == 0.5
    assert m["claim/macro_precision"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["claim/macro_recall"] == pytest.approx((1.0 + 1 / 3) / 2)
    assert m["image-to-text/claim/accuracy"] == pytest.approx(1 / 3) and m["text-to-image/claim/accuracy"] == 1.0
    # segments: a/seg0 gold H pred H; a/seg1 gold N pred U; b/seg0 gold N pred N
    assert m["segment/accuracy"] == pytest.approx(2 / 3)
    assert s["groups"]["segment/overall"]["n_segments"] == 3
    assert s["unparseable"] == {"count": 1, "ids": ["a/2"]}
    assert s["skipped"]["count"] == 1 and "b/1" in s["skipped"]["reasons"]
    assert s["n"] == 4 and {"id": "a/1", "gold": N, "parsed": H} in s["details"]["per_claim"]
    assert set(s["ci"]) >= {"claim/accuracy", "segment/macro_f1"}


def test_excluded_policy_drops_unparseable_claims_and_empty_segments(tmp_path):
    root = _tiny_root(tmp_path)
    cls = BENCHMARKS.get("mhalubench")
    proto = type("Excl", (cls,), {"params": {**cls.params, "policy": "unparseable_excluded"}})()
    preds = [{"id": i, "text": t} for i, t in (("a/0", H), ("a/1", N), ("a/2", "?"), ("b/0", N), ("b/1", H))]
    s = proto.score(preds, root, n_boot=0)
    assert s["metrics"]["claim/accuracy"] == 1.0 and s["groups"]["claim/overall"]["n_claims"] == 4
    assert s["groups"]["segment/overall"]["n_segments"] == 2  # a's segment 1 had only the unparseable claim


def test_list_protocol_asks_once_per_record_and_parses_the_json_answer(tmp_path):
    root = _tiny_root(tmp_path)
    proto = BENCHMARKS.get("mhalubench-list")()
    items = proto.items(root)
    assert [it.id for it in items] == ["a", "b"]
    assert "claim1: There is a dog.\nclaim2: There is a cat.\nclaim3: The cat is black." in items[0].question
    assert '[{"claim1": "hallucination"' in items[0].question
    preds = [{"id": "a", "text": '[{"claim1": "hallucination", "reason": "r"}, {"claim2": "non-hallucination"},'
                                 ' {"claim3": "non-hallucination"}]'},
             {"id": "b", "text": "claim1: non-hallucination\nclaim2: garbage"}]
    s = proto.score(preds, root, n_boot=0)
    assert s["metrics"]["claim/accuracy"] == pytest.approx(4 / 5) and s["unparseable"]["ids"] == ["b/1"]


def test_synthetic_world_prompt_matches_the_protocol(synthetic_root):
    from bench.data import synthetic

    proto = BENCHMARKS.get("mhalubench")()
    if hasattr(synthetic, "DETECT_PROMPT"):  # the world's pretraining asks the protocol's question
        assert synthetic.DETECT_PROMPT == proto.params["prompt"]
    items = proto.items(synthetic_root)
    s = proto.score([{"id": it.id, "text": it.meta["gold"]} for it in items], synthetic_root, n_boot=20)
    assert s["metrics"]["claim/accuracy"] == 1.0 and s["metrics"]["segment/accuracy"] == 1.0


@pytest.mark.parametrize("line,field", [
    ('{"id": "a", "claims": []}', "image_path"),
    ('{"id": "a", "image_path": "x.png", "claims": [{"claim": "c", "label": "maybe"}]}', "claims"),
    ('{"id": "a", "image_path": "x.png"}', "claims"),
])
def test_malformed_record_names_file_line_and_field(tmp_path, line, field):
    (tmp_path / "mhalubench").mkdir()
    (tmp_path / "mhalubench" / "claims.jsonl").write_text('{"id": "z", "image_path": "z.png", "claims": '
                                                          '[{"claim": "c", "label": "hallucination"}]}\n' + line + "\n")
    with pytest.raises(DataError, match=rf"claims.jsonl:2 field '{field}'"):
        BENCHMARKS.get("mhalubench")().items(tmp_path)
