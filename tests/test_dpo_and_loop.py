"""DPO loss on hand-computed numbers, and a tiny end-to-end training run through the shared loop."""

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench.data.preference import PreferenceRecord
from bench.errors import BenchError
from methods.dpo import DpoConfig, DpoMethod, dpo_sigmoid_loss
from tests.tiny_model import build


def test_dpo_loss_matches_hand_computation():
    pc, pr = torch.tensor([-4.0, -2.0]), torch.tensor([-6.0, -1.0])
    rc, rr = torch.tensor([-5.0, -2.5]), torch.tensor([-5.0, -1.5])
    losses, cr, rj = dpo_sigmoid_loss(pc, pr, rc, rr, beta=0.1)
    # sample 0: margin = (-4+5) - (-6+5) = 2   -> -log σ(0.2)
    # sample 1: margin = (-2+2.5) - (-1+1.5) = 0 -> log 2
    expected = torch.tensor([-math.log(1 / (1 + math.exp(-0.2))), math.log(2.0)])
    assert torch.allclose(losses, expected, atol=1e-7)
    assert torch.allclose(cr, torch.tensor([0.1, 0.05])) and torch.allclose(rj, torch.tensor([-0.1, 0.05]))


def test_weights_scale_log_ratios_inside_the_sigmoid():
    losses, _, _ = dpo_sigmoid_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]),
                                    torch.tensor([-2.0]), beta=0.5, rejected_weight=torch.tensor([3.0]))
    # margin = 1*(1) - 3*(-1) = 4 -> -log σ(2)
    assert losses.item() == pytest.approx(-math.log(1 / (1 + math.exp(-2.0))), abs=1e-7)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    model_dir = build(root / "model")
    recs = []
    for i in range(6):
        img = root / f"{i}.png"
        Image.new("RGB", (40, 28), (40 * i, 100, 200 - 30 * i)).save(img)
        recs.append(PreferenceRecord(str(i), str(img), "describe this image in detail", "dog cat", "dog car"))
    return model_dir, recs


def _train(model_dir, recs, out, max_steps, resume=False, save_every=0):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from bench.models.llava import make_preprocessor
    from bench.train.config import TrainConfig
    from bench.train.loop import train

    cfg = DpoConfig(train=TrainConfig(lr=5e-3, max_steps=max_steps, batch_size=2, max_length=128, lora_r=4,
                                      lora_alpha=8, save_every=save_every, warmup_ratio=0.0))

    def loader():
        m = LlavaForConditionalGeneration.from_pretrained(model_dir)
        return m, make_preprocessor(AutoProcessor.from_pretrained(model_dir), m.config)

    return train(DpoMethod(), cfg, loader, recs, out, seed=0, resume=resume, progress=False)


def test_training_changes_every_lora_parameter_and_nothing_else(tiny, tmp_path):
    from safetensors.torch import load_file
    from transformers import LlavaForConditionalGeneration

    model_dir, recs = tiny
    summary = _train(model_dir, recs, tmp_path, max_steps=3)
    assert math.isfinite(summary["dpo"]["loss"])
    adapter = load_file(str(tmp_path / "checkpoint" / "dpo" / "adapter" / "adapter_model.safetensors"))
    lora_b = {k: v for k, v in adapter.items() if "lora_B" in k}
    lora_a = {k: v for k, v in adapter.items() if "lora_A" in k}
    assert lora_b and len(lora_a) == len(lora_b)
    assert all(v.abs().sum() > 0 for v in lora_b.values()), "a LoRA B matrix stayed at its zero init"
    assert all("language_model" in k for k in adapter), "LoRA must sit on the language model only"
    # every trainable tensor moved between the first and last checkpoint state; frozen ones equal the base
    from bench.models.loading import apply_checkpoint

    base = LlavaForConditionalGeneration.from_pretrained(model_dir)
    merged = apply_checkpoint(LlavaForConditionalGeneration.from_pretrained(model_dir), tmp_path / "checkpoint")
    b, m = base.state_dict(), merged.state_dict()
    changed = {k for k in b if not torch.equal(b[k], m[k])}
    targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    expected = {k for k in b if "language_model" in k and k.endswith(".weight") and any(t in k for t in targets)}
    assert changed == expected


def _stage_logs(out: Path) -> dict[str, list[dict]]:
    ckpt = out / "checkpoint"
    return {p.parent.name: [json.loads(x) for x in p.read_text().splitlines()] for p in sorted(ckpt.glob("*/log.jsonl"))}


def _stage_weights(out: Path) -> dict[str, torch.Tensor]:
    """Every safetensors weight file the stages leave (adapter, projector), keyed by file and tensor name."""
    from safetensors.torch import load_file

    ckpt = out / "checkpoint"
    return {f"{f.relative_to(ckpt)}:{k}": v for f in sorted(ckpt.rglob("*.safetensors")) if "ref_logps" not in f.name
            for k, v in load_file(str(f)).items()}


@pytest.mark.parametrize("name,kill_stage", [("dpo", "dpo"), ("povid", "stage1"), ("povid", "stage2")])
def test_resumed_run_matches_uninterrupted_run(name, kill_stage, tiny_llava_loader, make_preference_records,
                                               tmp_path, monkeypatch):
    """Killed during step 3 of ``kill_stage`` (checkpoint at step 2), then resumed: every step logged after the
    resume point, every later stage and the final weights of every stage equal the uninterrupted run's."""
    import bench.train.loop as loop
    from bench.registry import METHODS
    from tests.test_methods import small_config

    records = make_preference_records(4)
    cfg = small_config(name, max_steps=4, save_every=2)

    def run(out, resume=False):
        return loop.train(METHODS.get(name)(), cfg, tiny_llava_loader, records, out, seed=0, resume=resume,
                          progress=False)

    run(tmp_path / "full")
    real_append = loop.append_jsonl

    class Killed(Exception):
        pass

    def append(path, rows):
        real_append(path, rows)
        if path.parent.name == kill_stage and rows[0]["step"] == 3:
            raise Killed()

    monkeypatch.setattr(loop, "append_jsonl", append)
    with pytest.raises(Killed):
        run(tmp_path / "part")
    monkeypatch.undo()
    stage_dir = tmp_path / "part" / "checkpoint" / kill_stage
    assert not (stage_dir / "DONE").exists()
    assert torch.load(stage_dir / "state.pt", weights_only=False)["step"] == 2
    run(tmp_path / "part", resume=True)

    full, resumed = _stage_logs(tmp_path / "full"), _stage_logs(tmp_path / "part")
    assert list(resumed) == list(full)
    for stage in full:
        assert [r["step"] for r in resumed[stage]] == [r["step"] for r in full[stage]] == [1, 2, 3, 4]
        for key in ("loss", "grad_norm", "lr"):
            assert [r[key] for r in resumed[stage]] == pytest.approx([r[key] for r in full[stage]], abs=1e-6), \
                f"{stage}: {key}"
    assert len({r["loss"] for r in full[kill_stage]}) > 1, "the loss never moved: nothing was trained"
    w_full, w_resumed = _stage_weights(tmp_path / "full"), _stage_weights(tmp_path / "part")
    assert w_full.keys() == w_resumed.keys() and any("adapter" in k for k in w_full)
    for k in w_full:
        torch.testing.assert_close(w_resumed[k], w_full[k], atol=1e-6, rtol=0, msg=k)


def test_empty_response_is_a_clear_error(tiny, tmp_path):
    model_dir, recs = tiny
    bad = [PreferenceRecord("x1", recs[0].image, "q", "dog", " ")] + recs[:1]
    with pytest.raises(BenchError, match="x1"):
        _train(model_dir, bad, tmp_path, max_steps=1)
