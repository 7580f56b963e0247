"""The issue-13 "bad input" acceptance, for AMBER, Object HalBench, MMHal-Bench and LLaVA-Bench through the harness
(``score_predictions`` → ``scores/<protocol>.json``): a response id not in the benchmark, a missing image (the
engine's skip merged in, and the image really absent from the data root), an AMBER id out of range — each
reported with its item id and counted in ``skipped``; every other item is scored."""

import shutil

import pytest

from bench.io import read_json, write_jsonl
from bench.registry import BENCHMARKS
from tests.conftest import requires_nltk

CASES = {"amber-d": "No", "amber-g-nosim": "There is a dog and a cup on the table.",
         "objhal": "There is a dog and a cup on the table.",
         "objhal-gpt-annotation": "There is a dog and a cup on the table.",
         "mmhal-annotation": "There is a dog and a cup on the table.",
         "llava-bench-annotation": "There is a dog and a cup on the table."}


@pytest.fixture(scope="module")
def world(synthetic_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input") / "world"
    shutil.copytree(synthetic_root, root)
    return root


@requires_nltk
@pytest.mark.parametrize("protocol", sorted(CASES))
def test_unknown_ids_and_a_missing_image_are_reported_with_ids_and_counted(world, tmp_path, protocol):
    from pathlib import Path

    from bench.pipeline import EvalConfig, score_predictions

    bench = BENCHMARKS.get(protocol)()
    items = bench.items(world)
    lost = items[1]
    Path(lost.image).unlink(missing_ok=True)  # the engine skips it: no prediction, its reason merged in
    unknown = "999999" if protocol.startswith("amber") else "unknown-id"
    preds = [{"id": it.id, "text": CASES[protocol]} for it in items if it.image != lost.image]
    preds.append({"id": unknown, "text": CASES[protocol]})
    write_jsonl(tmp_path / "pred.jsonl", preds)
    out = tmp_path / "run" / "scores" / f"{protocol}.json"
    lost_ids = [it.id for it in items if it.image == lost.image]
    score_predictions(bench, tmp_path / "pred.jsonl", world, out, EvalConfig(n_boot=10),
                      {i: f"image not found: {lost.image}" for i in lost_ids})
    on_disk = read_json(out)
    reasons = on_disk["skipped"]["reasons"]
    assert on_disk["skipped"]["count"] == len(reasons) and on_disk["protocol"] == protocol
    assert all(reasons[i].startswith("image not found") for i in lost_ids)
    assert unknown in reasons and ("AMBER id" in reasons[unknown] or "not in" in reasons[unknown]), reasons[unknown]
    assert on_disk["n"] == len(items) - len(lost_ids)  # nothing else is lost
    if not protocol.startswith("amber"):  # rescored without the engine's reasons, the scorer itself says why
        direct = bench.score(preds, world, n_boot=0, cache_dir=tmp_path / "run" / "judge")
        assert all("image not found" in direct["skipped"]["reasons"][i] for i in lost_ids)
