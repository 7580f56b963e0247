"""The reference is the stage's starting model: adapters disabled and, when the projector trains in place
(HA-DPO, HSA-DPO), its starting weights — also for reference forwards computed online, after updates."""

import torch

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
        start, _, _ = run_sequences(base, pre, records, [CHOSEN, REJECTED], TrainConfig(max_length=256), 0, 0, "cpu",
                                    pre.tokenizer.pad_token_id)
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
    args = (pre, records, [CHOSEN, REJECTED], cfg, 0, 0, "cpu", pre.tokenizer.pad_token_id)
    with torch.no_grad():
        moved, _, _ = run_sequences(model, *args)
        with ReferenceMode(model, frozen):
            ref, _, _ = run_sequences(model, *args)
        with ReferenceMode(model):  # adapters off only: still the trained projector
            adapters_only, _, _ = run_sequences(model, *args)
        again, _, _ = run_sequences(model, *args)
    for name in ("chosen", "rejected"):
        assert torch.allclose(ref[name].logps, start[name].logps, atol=1e-6)
        assert not torch.allclose(adapters_only[name].logps, start[name].logps, atol=1e-4)
        assert torch.equal(again[name].logps, moved[name].logps)  # the trained projector is back after the context
    assert llava_of(model).model.multi_modal_projector is projector
