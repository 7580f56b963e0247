import pytest

from metrics.mhalubench import MHaluBenchProtocol, classification_metrics, parse_lenient, parse_strict


@pytest.mark.parametrize("raw,strict,lenient", [
    ("Hallucination", "hallucination", "hallucination"), (" non hallucination ", "non-hallucination", "non-hallucination"),
    ("NON_HALLUCINATION", "non-hallucination", "non-hallucination"), ("non-hallucination.", "unparseable", "non-hallucination"),
    ("This claim is a hallucination.", "unparseable", "hallucination"), ("hallucinated", "unparseable", "unparseable"),
    ("hallucination or non-hallucination", "unparseable", "unparseable"), ("", "unparseable", "unparseable"),
])
def test_detector_output_parsing(raw, strict, lenient):
    assert parse_strict(raw) == strict
    assert parse_lenient(raw) == lenient


def test_macro_metrics_with_an_unpredicted_class():
    m = classification_metrics(["hallucination", "non-hallucination"], ["hallucination", "hallucination"])
    assert m["per_class"]["non-hallucination"]["precision"] == 0.0  # 0/0 -> 0 as sklearn zero_division=0
    assert m["accuracy"] == 0.5 and m["macro_precision"] == pytest.approx(0.25)


def test_protocol_reports_unparseable_outputs(synthetic_root):
    proto = MHaluBenchProtocol()
    items = proto.items(synthetic_root)
    preds = [{"id": it.id, "text": it.meta["gold"]} for it in items]
    preds[0]["text"] = "no idea"
    score = proto.score(preds, synthetic_root, n_boot=20)
    assert score["unparseable"]["count"] == 1
    assert score["metrics"]["claim/accuracy"] == pytest.approx((len(items) - 1) / len(items))
