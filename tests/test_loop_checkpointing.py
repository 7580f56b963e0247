"""Activation (gradient) checkpointing: the loop honours ``TrainConfig.gradient_checkpointing`` (decoder layers
are recomputed in backward) and it changes neither the loss nor a single gradient (float32, tiny llava)."""

import pytest
import torch

import methods  # noqa: F401


def _loss_and_grads(loader, records, checkpointing: bool):
    """One policy forward/backward of a DPO-style objective through the loop's own forward; returns the loss,
    the LoRA gradients and how often the first decoder layer's MLP ran (2 per step when it is recomputed)."""
    from bench.train.config import TrainConfig
    from bench.train.forward import llava_of
    from bench.train.loop import add_lora, disable_dropout, enable_gradient_checkpointing, run_sequences, set_trainable
    from bench.train.method import ForwardContext
    from methods.dpo import CHOSEN, REJECTED

    cfg = TrainConfig(lora_r=4, lora_alpha=8, max_length=256)
    model, pre = loader()
    torch.manual_seed(0)
    model = add_lora(model, cfg)
    with torch.no_grad():  # LoRA B starts at zero: make it non-zero so that every LoRA A gets a gradient too
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    disable_dropout(model)
    set_trainable(model, cfg)
    if checkpointing:
        enable_gradient_checkpointing(model)
    calls = {"n": 0}
    mlp = llava_of(model).model.language_model.layers[0].mlp  # inside the checkpointed layer
    real_forward = mlp.forward

    def counted(*args, **kwargs):  # not a forward hook: torch skips module hooks while recomputing
        calls["n"] += 1
        return real_forward(*args, **kwargs)

    mlp.forward = counted
    model.train()
    fwd = ForwardContext(pre=pre, cfg=cfg, seed=0, epoch=0, device="cpu", pad_id=pre.tokenizer.pad_token_id)
    lps, _, _ = run_sequences(model, records, [CHOSEN, REJECTED], forward=fwd)
    margin = lps["chosen"].logps.sum(-1) - lps["rejected"].logps.sum(-1)
    loss = -torch.nn.functional.logsigmoid(0.1 * margin).mean()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), grads, calls["n"]


def test_gradient_checkpointing_recomputes_layers_and_leaves_loss_and_grads_unchanged(tiny_llava_loader,
                                                                                      make_preference_records):
    records = make_preference_records(3)
    loss, grads, runs = _loss_and_grads(tiny_llava_loader, records, checkpointing=False)
    loss_ckpt, grads_ckpt, runs_ckpt = _loss_and_grads(tiny_llava_loader, records, checkpointing=True)
    assert (runs, runs_ckpt) == (1, 2), "with checkpointing the decoder layer must be recomputed in backward"
    torch.testing.assert_close(loss_ckpt, loss, atol=1e-5, rtol=0)
    assert grads.keys() == grads_ckpt.keys() and len(grads) > 0
    assert all(g.abs().sum() > 0 for g in grads.values()), "some LoRA weight got no gradient"
    for n in grads:
        torch.testing.assert_close(grads_ckpt[n], grads[n], atol=1e-5, rtol=1e-5, msg=n)


def test_loop_enables_checkpointing_from_the_config_and_trains_identically(tiny_llava_loader,
                                                                           make_preference_records, tmp_path,
                                                                           monkeypatch):
    import json

    import bench.train.loop as loop
    from methods.dpo import DpoMethod
    from tests.test_methods import small_config

    records = make_preference_records(4)
    enabled = []
    real = loop.enable_gradient_checkpointing
    monkeypatch.setattr(loop, "enable_gradient_checkpointing", lambda m: (enabled.append(True), real(m)))

    def run(out, on: bool):
        loop.train(DpoMethod(), small_config("dpo", gradient_checkpointing=on), tiny_llava_loader, records, out,
                   seed=0, progress=False)
        return [json.loads(x) for x in (out / "checkpoint" / "dpo" / "log.jsonl").read_text().splitlines()]

    plain = run(tmp_path / "plain", False)
    assert not enabled
    ckpt = run(tmp_path / "ckpt", True)
    assert enabled == [True]
    for key in ("loss", "grad_norm"):
        assert [r[key] for r in ckpt] == pytest.approx([r[key] for r in plain], abs=1e-5), key
