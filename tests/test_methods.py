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


def test_opa_pair_loss_sequence_and_position_aligned_forms():
    from methods.opa_dpo import pair_loss

    pol = {"c": _lp([[-1.0, -2.0]], [[1, 1]]), "r": _lp([[-3.0, 0.0, 0.0]], [[1, 0, 0]])}
    ref = {"c": _lp([[-1.5, -2.5]], [[1, 1]]), "r": _lp([[-2.0, 0.0, 0.0]], [[1, 0, 0]])}
    wc, wr = torch.tensor([[2.0, 1.0]]), torch.ones(1, 3)
    seq = pair_loss(pol, ref, "c", "r", 1.0, wc, wr, per_token_aligned=False)
    # Σ w Δ chosen = 2*0.5 + 1*0.5 = 1.5 ; rejected = -1 -> logit 2.5
    assert seq.item() == pytest.approx(-math.log(1 / (1 + math.exp(-2.5))), abs=1e-6)
    tok = pair_loss(pol, ref, "c", "r", 1.0, wc, wr, per_token_aligned=True)
    # positions: (1 - -1) = 2, (0.5 - 0) = 0.5, (0 - 0) = 0 (padding adds log 2) -> mean of three
    sp = lambda x: -math.log(1 / (1 + math.exp(-x)))  # noqa: E731
    assert tok.item() == pytest.approx((sp(2.0) + sp(0.5) + sp(0.0)) / 3, abs=1e-6)


def test_opa_masked_image_sets_thirty_percent_to_the_mean_deterministically():
    from methods.opa_dpo import mask_pixels

    x = torch.arange(2 * 10 * 10, dtype=torch.float32).reshape(2, 10, 10)
    a = mask_pixels(x, torch.Generator().manual_seed(3))
    b = mask_pixels(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    changed = (a != x).any(0)
    assert changed.sum().item() == 30 and torch.all(a[:, changed] == x.mean())


def test_opa_loader_reads_the_report_format(tmp_path):
    import json

    from bench.data.formats import load_opa
    from bench.errors import DataError

    report = {"0": {"copied_content": "A dog and a fork.", "rewritten_content": "A dog.", "score": 2,
                    "error_type": "image_recognition_error"}, "Added": {"rewritten_content": "A cup."}}
    row = {"image": "x.png", "queries": "<image>\nDescribe.", "standard_response": "A dog and a cup.",
           "original_generate_response": "A dog and a fork.", "AI_pseudo_response": "A dog. A cup.",
           "AI_json_report": json.dumps(report)}
    path = tmp_path / "opa.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps({**row, "AI_json_report": "{oops"}) + "\n")
    with pytest.raises(DataError, match="opa.jsonl:2 field 'AI_json_report'"):
        load_opa(path)
    path.write_text(json.dumps(row) + "\n")
    (rec,) = load_opa(path)
    assert rec.extra["revision"] == "A dog. A cup." and rec.extra["rollout"] == "A dog and a fork."
    assert rec.extra["sentences"][0]["score"] == 2 and rec.question == "Describe."


def test_povid_loader_reads_the_released_format(tmp_path):
    import json

    from bench.data.formats import load_povid
    from bench.errors import DataError

    row = {"id": "COCO_train2014_1", "image": "a.jpg",
           "conversations": [{"from": "human", "value": "<image>\nDescribe this image in detail."},
                             {"from": "gpt", "value": "A dog."}],
           "rejected_conversations": [{"from": "human", "value": "<image>\nDescribe this image in detail."},
                                      {"from": "gpt", "value": "A dog and a cat."}]}
    path = tmp_path / "povid.json"
    path.write_text(json.dumps([row]))
    (rec,) = load_povid(path)
    assert (rec.question, rec.chosen, rec.rejected) == ("Describe this image in detail.", "A dog.", "A dog and a cat.")
    path.write_text(json.dumps([{**row, "rejected_conversations": [{"from": "human"}]}]))
    with pytest.raises(DataError, match="povid.json:1 field 'conversations'"):
        load_povid(path)
