"""Every registered method: hand-computed loss where it differs from DPO, and a tiny CPU training run."""

import math

import pytest
import torch
from PIL import Image

from bench.data.preference import PreferenceRecord
from bench.registry import METHODS
from bench.train.method import LogProbs, StepInputs
from tests.tiny_model import build

import methods  # noqa: F401  (registers the in-tree methods)


def _lp(values, mask=None):
    t = torch.tensor(values, dtype=torch.float32)
    m = torch.ones_like(t) if mask is None else torch.tensor(mask, dtype=torch.float32)
    return LogProbs(t, m, torch.zeros_like(t, dtype=torch.long))


def test_hsa_dpo_weights_only_the_rejected_log_ratio_by_its_severity():
    from methods.hsa_dpo import HsaDpoConfig, hsa_dpo_loss

    recs = [PreferenceRecord("a", "x.png", "q", "c", "r", chosen_score=5.0, rejected_score=3.0),
            PreferenceRecord("b", "x.png", "q", "c", "r", rejected_score=None)]
    # per-token log-probs with padding (mask 0) that must not count
    policy = {"chosen": _lp([[-1.0, -1.0, 9.0], [-2.0, 0.0, 0.0]], [[1, 1, 0], [1, 0, 0]]),
              "rejected": _lp([[-3.0, 0.0], [-1.0, -1.0]], [[1, 0], [1, 1]])}
    ref = {"chosen": _lp([[-2.5], [-2.0]]), "rejected": _lp([[-2.0], [-1.5]])}
    loss, metrics = hsa_dpo_loss(StepInputs(recs, policy, ref), HsaDpoConfig(beta=0.5))
    # a: chosen ratio = -2 - -2.5 = 0.5; rejected ratio = -3 - -2 = -1, weight 3 -> logit 0.5 + 3 = 3.5
    # b: chosen ratio = -2 - -2 = 0; rejected ratio = -2 - -1.5 = -0.5, weight 1 (missing score) -> 0.5
    expected = (-math.log(1 / (1 + math.exp(-0.5 * 3.5))) - math.log(1 / (1 + math.exp(-0.5 * 0.5)))) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert metrics["rewards/rejected"].item() == pytest.approx(0.5 * (-1 - 0.5) / 2)  # unweighted rewards


def test_hsa_dpo_chosen_score_used_only_when_enabled():
    from methods.hsa_dpo import HsaDpoConfig, hsa_dpo_loss

    recs = [PreferenceRecord("a", "x.png", "q", "c", "r", chosen_score=2.0, rejected_score=1.0)]
    policy = {"chosen": _lp([[-1.0]]), "rejected": _lp([[-1.0]])}
    ref = {"chosen": _lp([[-2.0]]), "rejected": _lp([[-1.0]])}
    off, _ = hsa_dpo_loss(StepInputs(recs, policy, ref), HsaDpoConfig(beta=1.0))
    on, _ = hsa_dpo_loss(StepInputs(recs, policy, ref), HsaDpoConfig(beta=1.0, use_chosen_score=True))
    assert off.item() == pytest.approx(-math.log(1 / (1 + math.exp(-1.0))), abs=1e-6)
    assert on.item() == pytest.approx(-math.log(1 / (1 + math.exp(-2.0))), abs=1e-6)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_methods")
    model_dir = build(root / "model")
    recs = []
    for i in range(4):
        img = root / f"{i}.png"
        Image.new("RGB", (40, 28), (50 * i, 120, 90)).save(img)
        recs.append(PreferenceRecord(str(i), str(img), "describe this image in detail", "dog cat", "dog car",
                                     rejected_score=float(i % 3 + 1)))
    return model_dir, recs


@pytest.mark.parametrize("name", METHODS.names())
def test_method_trains_lora_and_leaves_frozen_weights(name, tiny, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from bench.config import merge
    from bench.models.llava import make_preprocessor
    from bench.models.loading import apply_checkpoint
    from bench.train.loop import train

    model_dir, recs = tiny
    method = METHODS.get(name)()
    cfg = method.default_config()
    small = {"lr": 5e-3, "max_steps": 2, "batch_size": 2, "max_length": 128, "lora_r": 4, "lora_alpha": 8,
             "warmup_ratio": 0.0}
    for fname in [f for f in vars(cfg) if type(getattr(cfg, f)).__name__ == "TrainConfig"]:
        cfg = merge(cfg, {fname: small})

    def loader():
        m = LlavaForConditionalGeneration.from_pretrained(model_dir)
        return m, make_preprocessor(AutoProcessor.from_pretrained(model_dir), m.config)

    summary = train(method, cfg, loader, recs, tmp_path, seed=0, progress=False)
    assert all(math.isfinite(s["loss"]) for s in summary.values())
    base = LlavaForConditionalGeneration.from_pretrained(model_dir).state_dict()
    merged = apply_checkpoint(LlavaForConditionalGeneration.from_pretrained(model_dir), tmp_path / "checkpoint")
    after = merged.state_dict()
    changed = {k for k in base if not torch.equal(base[k], after[k])}
    assert changed, "no weight changed"
    assert not any("vision_tower" in k or "embed_tokens" in k or "lm_head" in k for k in changed)
    for stage in summary:
        adapter = load_file(str(tmp_path / "checkpoint" / stage / "adapter" / "adapter_model.safetensors"))
        assert all(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)
    projector_trained = any(getattr(cfg, f).train_projector for f in vars(cfg)
                            if type(getattr(cfg, f)).__name__ == "TrainConfig")
    assert any("multi_modal_projector" in k for k in changed) == projector_trained


def test_povid_noise_schedule_and_mixed_loss():
    from methods.povid import PovidConfig, add_diffusion_noise, diffusion_alpha_bar, povid_stage2_loss

    assert diffusion_alpha_bar(500) == pytest.approx(0.745, abs=2e-3)  # x ≈ 0.863·x0 + 0.505·ε (methods.md §2.1)
    img = torch.full((3, 4, 4), 0.5)
    noisy = add_diffusion_noise(img, torch.Generator().manual_seed(0))
    assert noisy.min() >= 0 and noisy.max() <= 1 and not torch.equal(noisy, img)
    recs = [PreferenceRecord("a", "x.png", "q", "c", "r")]
    policy = {"chosen": _lp([[-1.0]]), "rejected": _lp([[-2.0]]), "noise_rejected": _lp([[-4.0]])}
    ref = {"chosen": _lp([[-1.0]]), "rejected": _lp([[-1.0]]), "noise_rejected": _lp([[-3.0]])}
    loss, m = povid_stage2_loss(StepInputs(recs, policy, ref), PovidConfig(beta=1.0))
    text = -math.log(1 / (1 + math.exp(-1.0)))   # margin (0) - (-1) = 1
    noise = -math.log(1 / (1 + math.exp(-1.0)))  # margin (0) - (-4 + 3) = 1
    assert loss.item() == pytest.approx(0.5 * text + 0.5 * noise, abs=1e-6)
