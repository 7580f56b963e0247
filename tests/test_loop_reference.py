"""The reference is the stage's starting model: adapters disabled and, when the projector trains in place
(HA-DPO, HSA-DPO) with ``reference_projector="frozen"``, its starting weights — also for reference forwards
computed online, after updates; with ``reference_projector="policy"`` (the HA-DPO/HSA-DPO seeds) the policy's
current projector, recomputed every step."""

import torch

from bench.train.method import ForwardContext
from methods.dpo import CHOSEN, REJECTED


def test_reference_mode_restores_the_starting_projector_and_disables_adapters(tiny_llava_loader,
                                                                              make_preference_records):
    import copy

    from bench.train.config import TrainConfig
    from bench.train.forward import llava_of
    from bench.train.loop import ReferenceMode, add_lora, run_sequences, set_trainable

    records = make_preference_records(2)
    base, pre = tiny_llava_loader()
    with torch.no_grad():
        start, _, _ = run_sequences(base, records, [CHOSEN, REJECTED],
                                    forward=ForwardContext(pre=pre, cfg=TrainConfig(max_length=256), seed=0, epoch=0,
                                                           device="cpu", pad_id=pre.tokenizer.pad_token_id))
    cfg = TrainConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0, max_length=256, train_projector=True)
    model = add_lora(base, cfg)
    set_trainable(model, cfg)
    frozen = copy.deepcopy(llava_of(model).model.multi_modal_projector).requires_grad_(False)
    projector = llava_of(model).model.multi_modal_projector
    assert all(p.requires_grad for p in projector.parameters())
    with torch.no_grad():  # "training" moved the projector and the LoRA
        for p in projector.parameters():
            p.add_(0.3)
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.fill_(0.05)
    args = (records, [CHOSEN, REJECTED])
    fwd = ForwardContext(pre=pre, cfg=cfg, seed=0, epoch=0, device="cpu", pad_id=pre.tokenizer.pad_token_id)
    with torch.no_grad():
        moved, _, _ = run_sequences(model, *args, forward=fwd)
        with ReferenceMode(model, frozen):
            ref, _, _ = run_sequences(model, *args, forward=fwd)
        with ReferenceMode(model):  # adapters off only: still the trained projector
            adapters_only, _, _ = run_sequences(model, *args, forward=fwd)
        again, _, _ = run_sequences(model, *args, forward=fwd)
    for name in ("chosen", "rejected"):
        assert torch.allclose(ref[name].logps, start[name].logps, atol=1e-6)
        assert not torch.allclose(adapters_only[name].logps, start[name].logps, atol=1e-4)
        assert torch.equal(again[name].logps, moved[name].logps)  # the trained projector is back after the context
    assert llava_of(model).model.multi_modal_projector is projector


def _reference_trace(loader, records, tmp_path, reference_projector: str):
    """Train HA-DPO 3 steps on 2 records (one batch: every step sees both); per step, the reference log-probs the
    loss received and two recomputations: the seed's reference (LM adapters off, the projector as it is now)
    and the base model with the starting projector."""
    import methods  # noqa: F401
    from bench.train.loop import adapters_off, run_sequences, train
    from methods.ha_dpo import HaDpoMethod
    from methods.dpo import dpo_stage_loss
    from tests.test_methods import small_config

    start_model, pre = loader()
    trace = []

    class Traced(HaDpoMethod):
        def stages(self, cfg):
            (stage,) = super().stages(cfg)

            def loss(inputs, mcfg):
                model, c = inputs.context.model, inputs.context.forward.cfg
                order = [r.id for r in inputs.records]
                recs = sorted(inputs.records, key=lambda r: r.id)
                fwd = ForwardContext(pre=pre, cfg=c, seed=0, epoch=0, device="cpu", pad_id=pre.tokenizer.pad_token_id)
                with torch.no_grad(), adapters_off(model):
                    seed_ref, _, _ = run_sequences(model, recs, [CHOSEN, REJECTED], forward=fwd)
                    start_ref, _, _ = run_sequences(start_model, recs, [CHOSEN, REJECTED], forward=fwd)
                perm = [order.index(r.id) for r in recs]
                got = {k: inputs.reference[k].sum()[perm] for k in ("chosen", "rejected")}
                trace.append((got, {k: v.sum() for k, v in seed_ref.items()}, {k: v.sum() for k, v in start_ref.items()}))
                return dpo_stage_loss(inputs, mcfg)

            stage.loss = loss
            return [stage]

    cfg = small_config("ha-dpo", batch_size=2, max_steps=3, lr=3e-2, reference_projector=reference_projector)
    assert cfg.train.train_projector
    train(Traced(), cfg, loader, records, tmp_path / reference_projector, seed=0, progress=False)
    return trace


def test_policy_reference_projector_moves_the_reference_with_the_trained_projector(tiny_llava_loader,
                                                                                 make_preference_records, tmp_path):
    """HA-DPO/HSA-DPO's seeds build the reference's input embeddings with the policy's current projector: under
    ``reference_projector="policy"`` the reference log-probs the loss sees are the LM-without-adapters on the
    current projector at every step, and they leave the starting model's after the first update."""
    trace = _reference_trace(tiny_llava_loader, make_preference_records(2), tmp_path, "policy")
    assert len(trace) == 3
    for got, seed_ref, _ in trace:
        for k in ("chosen", "rejected"):
            torch.testing.assert_close(got[k], seed_ref[k], atol=1e-5, rtol=0)
    for k in ("chosen", "rejected"):
        torch.testing.assert_close(trace[0][0][k], trace[0][2][k], atol=1e-5, rtol=0)  # step 1: nothing moved yet
        assert (trace[2][0][k] - trace[2][2][k]).abs().max() > 1e-3, "the reference did not follow the projector"
    assert not (tmp_path / "policy" / "checkpoint" / "dpo" / "ref_logps.safetensors").exists()


def test_frozen_reference_projector_keeps_the_starting_reference(tiny_llava_loader, make_preference_records, tmp_path):
    """``reference_projector="frozen"``: the reference stays the starting model (cached), while the seed's moving
    reference drifts away from it as the projector trains."""
    trace = _reference_trace(tiny_llava_loader, make_preference_records(2), tmp_path, "frozen")
    for got, _, start_ref in trace:
        for k in ("chosen", "rejected"):
            torch.testing.assert_close(got[k], start_ref[k], atol=1e-5, rtol=0)
    assert any((trace[2][1][k] - trace[2][2][k]).abs().max() > 1e-3 for k in ("chosen", "rejected"))
    assert (tmp_path / "frozen" / "checkpoint" / "dpo" / "ref_logps.safetensors").exists()
