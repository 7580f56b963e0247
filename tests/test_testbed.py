"""The CPU testbed (issue 8), reduced: the shipped tiny-llava hallucinates on the bundled synthetic world, and
plain DPO and HSA-DPO — trained on the HSA-DPO pipeline's pairs built from the base model's own outputs on
200 of the preference images — lower CHAIR_i and raise POPE-adversarial accuracy, at seed 0.

Reduced from the main job (``python -m bench run --methods all``) in methods (2 of 5), benchmarks (POPE and
CHAIR; CHAIR's tokenizer needs the NLTK data, so the test skips without it — CI provides it), preference
images (200 of 300) and bootstrap resamples; the model, data generator, pipelines, training profile and scorers are the real ones. It asserts
the direction of the effect (what a broken loss, a swapped chosen/rejected or a dead reference model would
flip), not its size; the leaderboard in ``leaderboards/`` carries the full run with confidence intervals.
"""

import json

from tests.conftest import requires_nltk

from bench.config import merge, parse_overrides
from bench.pipeline import RunConfig, run


def _metrics(out, label):
    d = out / "tiny-llava" / label / "scores"
    pope = json.loads((d / "pope.json").read_text())["metrics"]
    chair = json.loads((d / "chair.json").read_text())["metrics"]
    return pope, chair


@requires_nltk
def test_dpo_and_hsa_dpo_lower_chair_and_raise_pope_adversarial_on_the_testbed(tmp_path, monkeypatch):
    from bench.models import TinyLlava

    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(TinyLlava, "pipeline_source", {**TinyLlava.pipeline_source, "limit": 200})
    out = tmp_path / "runs"
    cfg = merge(RunConfig(methods=["dpo", "hsa-dpo"], benchmarks=["pope", "chair"], out=str(out), seed=0),
                parse_overrides(["eval.n_boot=20", "eval.batch_size=16"]))
    run(cfg, progress=False)

    base_pope, base_chair = _metrics(out, "base")
    # the base model hallucinates for the planted reason: absent partners are affirmed and described
    assert base_chair["chair_i"] > 0.03
    assert base_pope["adversarial/accuracy"] < base_pope["random/accuracy"] - 0.05
    for method in ("dpo", "hsa-dpo"):
        pope, chair = _metrics(out, method)
        assert chair["chair_i"] < base_chair["chair_i"], (method, chair, base_chair)
        assert pope["adversarial/accuracy"] > base_pope["adversarial/accuracy"], (method, pope, base_pope)
        rec = json.loads((out / "tiny-llava" / method / "run.json").read_text())
        assert rec["data"]["pipeline"]["method"] == "hsa-dpo" and rec["data"]["records"] > 0
