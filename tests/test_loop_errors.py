"""Bad input fails early with one clear line naming the file / record; a NaN loss stops training with the step
and sample ids and leaves the last good checkpoint resumable."""

import json
import math

import pytest
import torch

import methods  # noqa: F401
from bench.errors import BenchError, DataError
from bench.registry import METHODS
from tests.test_methods import small_config


def _train(name, loader, records, out, cfg=None, resume=False, method=None):
    from bench.train.loop import train

    return train(method or METHODS.get(name)(), cfg or small_config(name), loader, records, out, seed=0,
                 resume=resume, progress=False)


def test_empty_response_stops_before_training_naming_the_sample_and_sequence(tiny_llava_loader,
                                                                             make_preference_records, tmp_path):
    records = make_preference_records(3)
    records[1].rejected = "  "
    with pytest.raises(BenchError, match="sample r1: empty response for sequence 'rejected'"):
        _train("dpo", tiny_llava_loader, records, tmp_path)
    assert not (tmp_path / "checkpoint" / "dpo" / "log.jsonl").exists()


def test_missing_image_stops_before_training_naming_the_file_and_sample(tiny_llava_loader, make_preference_records,
                                                                        tmp_path):
    records = make_preference_records(3)
    records[2].image = str(tmp_path / "nope.png")
    with pytest.raises(DataError, match=r"nope\.png: image file not found \(sample r2\)"):
        _train("hsa-dpo", tiny_llava_loader, records, tmp_path)


def test_sequence_longer_than_max_length_is_refused_not_truncated(tiny_llava_loader, make_preference_records,
                                                                  tmp_path):
    records = make_preference_records(3)
    records[2].chosen = " ".join(["The image shows a dog."] * 40)
    with pytest.raises(BenchError, match=r"sample r2 \(chosen\): sequence of \d+ tokens .* exceeds max_length 256"):
        _train("ha-dpo", tiny_llava_loader, records, tmp_path)
    assert not (tmp_path / "checkpoint" / "dpo" / "log.jsonl").exists()


def test_duplicate_sample_ids_are_refused(tiny_llava_loader, make_preference_records, tmp_path):
    records = make_preference_records(3)
    records[2].id = records[0].id
    with pytest.raises(BenchError, match="duplicate sample id 'r0'"):
        _train("dpo", tiny_llava_loader, records, tmp_path)


def test_nan_loss_stops_with_step_and_sample_ids_and_the_last_good_checkpoint_resumes(
        tiny_llava_loader, make_preference_records, tmp_path):
    from bench.train.method import Stage
    from methods.dpo import CHOSEN, REJECTED, DpoMethod, dpo_stage_loss

    records = make_preference_records(4)
    calls = {"n": 0}

    def poisoned(inputs, cfg):  # the third micro-batch (step 3) turns NaN
        loss, m = dpo_stage_loss(inputs, cfg)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 3 else loss), m

    class Poisoned(DpoMethod):
        def stages(self, cfg):
            return [Stage("dpo", [CHOSEN, REJECTED], poisoned)]

    cfg = small_config("dpo", max_steps=4, save_every=1)
    with pytest.raises(BenchError) as err:
        _train("dpo", tiny_llava_loader, records, tmp_path / "run", cfg=cfg, method=Poisoned())
    msg = str(err.value)
    assert "non-finite loss nan at step 3 on samples ['r" in msg
    assert "last good checkpoint (step 2)" in msg
    stage_dir = tmp_path / "run" / "checkpoint" / "dpo"
    assert torch.load(stage_dir / "state.pt", weights_only=False)["step"] == 2
    assert not (stage_dir / "DONE").exists() and not (stage_dir / "adapter").exists()
    logged = [json.loads(x) for x in (stage_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2] and all(math.isfinite(r["loss"]) for r in logged)
    # the data problem fixed, --resume continues from step 2 and equals a clean run
    _train("dpo", tiny_llava_loader, records, tmp_path / "run", cfg=cfg, resume=True)
    _train("dpo", tiny_llava_loader, records, tmp_path / "clean", cfg=cfg)
    resumed = [json.loads(x)["loss"] for x in (stage_dir / "log.jsonl").read_text().splitlines()]
    clean = [json.loads(x)["loss"] for x in (tmp_path / "clean/checkpoint/dpo/log.jsonl").read_text().splitlines()]
    assert resumed == pytest.approx(clean, abs=1e-6) and len(resumed) == 4


def test_nan_without_any_checkpoint_says_so(tiny_llava_loader, make_preference_records, tmp_path):
    from bench.train.method import Stage
    from methods.dpo import CHOSEN, REJECTED, DpoMethod

    class AlwaysNan(DpoMethod):
        def stages(self, cfg):
            return [Stage("dpo", [CHOSEN, REJECTED],
                          lambda inputs, cfg: (inputs.policy["chosen"].sum().mean() * float("nan"), {}))]

    with pytest.raises(BenchError, match="at step 1 on samples .*no checkpoint was saved before this step"):
        _train("dpo", tiny_llava_loader, make_preference_records(2), tmp_path, cfg=small_config("dpo", save_every=0),
               method=AlwaysNan())


def test_a_changed_method_parameter_invalidates_the_reference_cache_and_resume(tiny_llava_loader,
                                                                               make_preference_records, tmp_path):
    """The reference cache and resume state are keyed by the whole method config (not only the loop's), so a
    rerun with another OPA mask ratio recomputes the masked-image reference instead of reusing stale values."""
    from bench.config import merge

    records = make_preference_records(2)
    cfg = small_config("opa-dpo", max_steps=1)
    _train("opa-dpo", tiny_llava_loader, records, tmp_path, cfg=cfg)
    meta = json.loads((tmp_path / "checkpoint" / "dpo" / "ref_logps.json").read_text())
    with pytest.raises(BenchError, match="mask_ratio 0.3 → 0.5"):  # the folder's identity refuses it first
        _train("opa-dpo", tiny_llava_loader, records, tmp_path, cfg=merge(cfg, {"mask_ratio": 0.5}))
    # a folder without an identity file (written before it existed): the stage fingerprint still guards the cache
    (tmp_path / "checkpoint" / "identity.json").unlink()
    _train("opa-dpo", tiny_llava_loader, records, tmp_path, cfg=merge(cfg, {"mask_ratio": 0.5}))
    meta2 = json.loads((tmp_path / "checkpoint" / "dpo" / "ref_logps.json").read_text())
    assert meta["fingerprint"] != meta2["fingerprint"]
