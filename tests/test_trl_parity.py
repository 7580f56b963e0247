"""Our ``dpo`` equals TRL's ``DPOTrainer`` (loss_type sigmoid, same β, PEFT reference = adapters disabled, no
precomputed reference) on the tiny llava and a fixed batch: loss, rewards and every LoRA gradient within 1e-5
in float32. TRL is fed exactly the token ids our preprocessor builds (expanded image tokens, labels != -100
as ``completion_mask``, pixel values duplicated for chosen/rejected) through its own ``compute_loss``."""

import pytest
import torch

trl = pytest.importorskip("trl", reason="TRL is not importable: the parity test needs trl>=1.0 (DPOTrainer)")

BETA = 0.1


def _lora_model(loader):
    from bench.train.config import TrainConfig
    from bench.train.loop import add_lora, disable_dropout

    base, pre = loader()
    cfg = TrainConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0, max_length=256)
    model = add_lora(base, cfg)
    disable_dropout(model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # non-zero B so that policy and reference differ and every LoRA tensor has a gradient
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model, pre, cfg


def test_dpo_loss_rewards_and_lora_gradients_equal_trl_dpo_trainer(tiny_llava_loader, tiny_llava_dir,
                                                                   make_preference_records, tmp_path):
    from datasets import Dataset
    from peft import LoraConfig
    from PIL import Image
    from transformers import AutoProcessor
    from trl import DPOConfig, DPOTrainer

    from bench.train.loop import adapters_off, encode, run_sequences
    from bench.train.method import ForwardContext, StepInputs
    from methods.dpo import CHOSEN, REJECTED, DpoConfig, dpo_stage_loss

    records = make_preference_records(3)
    model, pre, cfg = _lora_model(tiny_llava_loader)
    pad_id = pre.tokenizer.pad_token_id
    lora_state = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}

    # ---- ours
    model.train()
    fwd = ForwardContext(pre=pre, cfg=cfg, seed=0, epoch=0, device="cpu", pad_id=pad_id)
    policy, _, _ = run_sequences(model, records, [CHOSEN, REJECTED], forward=fwd)
    with torch.no_grad(), adapters_off(model):
        reference, _, _ = run_sequences(model, records, [CHOSEN, REJECTED], forward=fwd)
    loss, metrics = dpo_stage_loss(StepInputs(records, policy, reference), DpoConfig(beta=BETA))
    loss.backward()
    ours = {n: p.grad.detach().clone() for n, p in model.named_parameters() if "lora_" in n}

    # ---- TRL, same base weights, same LoRA values, reference = adapters disabled
    base, _ = tiny_llava_loader()
    processor = AutoProcessor.from_pretrained(tiny_llava_dir)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, bias="none",
                      target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$")
    args = DPOConfig(output_dir=str(tmp_path / "trl"), beta=BETA, loss_type=["sigmoid"], precompute_ref_log_probs=False,
                     report_to="none", use_cpu=True, bf16=False, fp16=False, max_length=None, disable_dropout=True,
                     seed=0, per_device_train_batch_size=len(records))
    data = Dataset.from_list([{"images": [Image.open(r.image).convert("RGB")], "prompt": r.question, "chosen": r.chosen,
                               "rejected": r.rejected} for r in records])
    trainer = DPOTrainer(model=base, args=args, train_dataset=data, processing_class=processor, peft_config=lora)
    trl_model = trainer.model
    assert "ref" not in trl_model.peft_config  # fresh adapter: TRL's reference is the adapters-disabled base
    with torch.no_grad():
        named = dict(trl_model.named_parameters())
        assert set(lora_state) <= set(named)
        for n, v in lora_state.items():
            named[n].copy_(v)
    # the batch exactly as our loop builds it: [chosen rows..., rejected rows...]
    enc = encode(pre, records, [CHOSEN, REJECTED], cfg, 0, 0)
    order = [r for name in ("chosen", "rejected") for r, (_, s) in enumerate(enc.keys) if s == name]
    seqs = [enc.seqs[r] for r in order]
    width = max(len(s["input_ids"]) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad_id)
    attention = torch.zeros(len(seqs), width, dtype=torch.long)
    completion = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        k = len(s["input_ids"])
        input_ids[i, :k] = torch.tensor(s["input_ids"])
        attention[i, :k] = 1
        completion[i, :k] = torch.tensor([int(x != -100) for x in s["labels"]])
    pixels = enc.pixels[torch.tensor([enc.image_index[r] for r in order])]
    inputs = {"input_ids": input_ids, "attention_mask": attention, "pixel_values": pixels, "completion_mask": completion}
    trl_model.train()
    trl_loss = trainer.compute_loss(trl_model, inputs)
    trl_loss.backward()
    theirs = {n: p.grad for n, p in trl_model.named_parameters() if "lora_" in n}

    assert abs(loss.item() - trl_loss.item()) < 1e-5
    logged = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert abs(metrics[key].item() - logged[key]) < 1e-5, key
    assert abs(metrics["rewards/margins"].item()) > 1e-4  # policy ≠ reference: the comparison is not vacuous
    assert set(ours) == set(theirs)
    worst = max((ours[n] - theirs[n]).abs().max().item() for n in ours)
    assert worst < 1e-5, f"largest LoRA gradient difference {worst:.2e}"
    assert all(theirs[n].abs().sum() > 0 for n in theirs)
