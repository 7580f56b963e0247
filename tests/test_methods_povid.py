"""POVID's stage-2 noise term on the tiny llava: the policy's arg-max-under-noise tokens are scored from the
clean chosen forward (with gradient), the reference uses its own arg-max, both see the same noise, and the
noise is fresh per epoch but reproducible."""

import torch

import methods  # noqa: F401


def test_noise_rejected_is_the_argmax_under_noise_scored_on_the_clean_image(tiny_llava_loader,
                                                                            make_preference_records):
    from bench.train.config import TrainConfig
    from bench.train.loop import ReferenceMode, add_lora, disable_dropout, pixel_values_for, run_sequences
    from bench.train.method import ForwardContext, Sequence, StepContext, StepInputs
    from methods.dpo import CHOSEN, REJECTED
    from methods.povid import PovidConfig, noise_rejected_forward, noised_variant

    records = make_preference_records(3)
    base, pre = tiny_llava_loader()
    cfg = TrainConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0, max_length=256)
    model = add_lora(base, cfg)
    disable_dropout(model)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(n))) * 0.2)
    pad = pre.tokenizer.pad_token_id
    fwd = ForwardContext(pre=pre, cfg=cfg, seed=0, epoch=1, device="cpu", pad_id=pad)
    policy, enc, raw = run_sequences(model, records, [CHOSEN, REJECTED], forward=fwd)
    inputs = StepInputs(records, policy, {}, StepContext(model=model, forward=fwd, encoded=enc, raw=raw,
                                                         reference_mode=lambda: ReferenceMode(model)))
    noise_rejected_forward(inputs, PovidConfig())
    got_policy, got_ref = inputs.policy["noise_rejected"], inputs.reference["noise_rejected"]
    assert got_policy.logps.requires_grad and not got_ref.logps.requires_grad

    noisy = Sequence("chosen_noised", CHOSEN.response, image=noised_variant(500))
    with torch.no_grad():
        _, _, pol_noisy = run_sequences(model, records, [noisy], forward=fwd)
        want, _, _ = run_sequences(model, records, [CHOSEN], forward=fwd, alt_targets=pol_noisy.argmax_of("chosen_noised"))
        with model.disable_adapter():
            _, _, ref_noisy = run_sequences(model, records, [noisy], forward=fwd)
            want_ref, _, _ = run_sequences(model, records, [CHOSEN], forward=fwd,
                                           alt_targets=ref_noisy.argmax_of("chosen_noised"))
    for got, exp in ((got_policy, want["chosen"]), (got_ref, want_ref["chosen"])):
        assert torch.equal(got.mask, exp.mask) and torch.equal(got.tokens, exp.tokens)
        assert torch.allclose(got.logps, exp.logps, atol=1e-5)
    assert torch.equal(got_policy.mask, policy["chosen"].mask)  # same supervised positions as y_w
    # scored tokens are the arg-max under noise, not y_w itself
    assert not torch.equal(got_policy.tokens, policy["chosen"].tokens)
    # gradient reaches the LoRA weights through the clean forward
    got_policy.sum().sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora_" in n)

    # the noise: same for policy and reference (same call), fresh per epoch, reproducible
    seq = Sequence("chosen_noised", CHOSEN.response, image=noised_variant(500))
    a = pixel_values_for(pre, records[0], seq, 0, 1)
    assert torch.equal(a, pixel_values_for(pre, records[0], seq, 0, 1))
    assert not torch.equal(a, pixel_values_for(pre, records[0], seq, 0, 2))
    assert not torch.equal(a, pixel_values_for(pre, records[0], Sequence("c", CHOSEN.response), 0, 1))
