"""pytest-benchmark figures for POPE scoring of 9000 answers (3 splits × 3000). No timing asserts.

Run with ``.venv/bin/python -m pytest tests/test_pope_perf.py --benchmark-enable`` to see the figures
(the project's addopts disable benchmarking, so a normal run executes each body once as a test).
"""

import json
import random

import pytest

from bench.registry import BENCHMARKS
from metrics.pope import read_questions, score_answers
from tests.conftest import TEST_DATA

V3_RANDOM = TEST_DATA / "shared" / "reference" / "pope" / "coco_pope_random.json"
PHRASES = ["Yes", "No", "Yes, there is a dog in the image.", "No, there is not.", "There is no dog.", "",
           "Yes\nThe image shows a dog.", "I don't see one.", "NO", "Maybe"]


@pytest.fixture(scope="module")
def nine_thousand():
    qs = read_questions(V3_RANDOM)
    rng = random.Random(0)
    splits = {}
    for split in ("random", "popular", "adversarial"):
        splits[split] = (qs, [{"question_id": q["question_id"], "text": rng.choice(PHRASES)} for q in qs])
    return splits


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """Three 3000-question files (the v3 random rows, text altered so they are not 'real' files)."""
    root = tmp_path_factory.mktemp("pope_perf")
    d = root / "pope" / "v3"
    d.mkdir(parents=True)
    qs = read_questions(V3_RANDOM)
    for split in ("random", "popular", "adversarial"):
        (d / f"coco_pope_{split}.json").write_text(
            "".join(json.dumps({**q, "text": q["text"] + f" ({split})"}) + "\n" for q in qs))
    return root


@pytest.mark.parametrize("parser", ["official", "opera", "exact"])
def test_scoring_9000_answers(benchmark, nine_thousand, parser):
    """join by question_id + parse + confusion + metrics, three splits."""
    out = benchmark(lambda: {s: score_answers(q, a, parser) for s, (q, a) in nine_thousand.items()})
    assert sum(o["n"] for o in out.values()) == 9000 and all(o["join"]["ok"] for o in out.values())


@pytest.mark.parametrize("n_boot", [0, 1000])
def test_protocol_score_9000_predictions(benchmark, data_root, n_boot):
    """The registered ``pope`` protocol end to end: read + sha256-check files, join, parse, metrics, CI."""
    proto = BENCHMARKS.get("pope")()
    rng = random.Random(1)
    preds = [{"id": it.id, "text": rng.choice(PHRASES)} for it in proto.items(data_root)]
    out = benchmark(lambda: proto.score(preds, data_root, n_boot=n_boot))
    assert out["n"] == 9000 and ("mean/f1" in out["ci"]) == (n_boot > 0)
