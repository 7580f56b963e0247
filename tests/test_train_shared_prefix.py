"""``train.share_prefix``: chosen and rejected packed into one row with their prompt + image prefix computed once
(:mod:`bench.train.shared_prefix`) give the padded path's log-probs, DPO loss and LoRA gradients (float32, CPU,
the tiny LLaVA built from its config); pairs that cannot share fall back; the default path never packs."""

import json

import pytest
import torch

from bench.data.preference import PreferenceRecord
from bench.models.llava import IGNORE_INDEX
from bench.train.config import TrainConfig
from bench.train.method import ForwardContext, ImageVariant, Sequence
from bench.train.shared_prefix import plan_rows
from bench.train.method import StepInputs
from methods.dpo import CHOSEN, REJECTED, DpoConfig, dpo_stage_loss

LONG = ("The image shows a dog, a cat and a dog. There is a cup. There is a car in the image. The image shows a"
        " chair, a cup and a chair. There is a fork in the image.")


def _shift(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return (x + 0.25 * torch.rand(x.shape, generator=g)).clamp(0, 1)


SHIFTED = ImageVariant("shifted", transform=_shift, space="raw", fixed=True)
REJECTED_SHIFTED = Sequence("rejected", lambda r: r.rejected, image=SHIFTED)
CHOSEN_SHIFTED = Sequence("chosen_shifted", lambda r: r.chosen, image=SHIFTED)


@pytest.fixture
def records(make_preference_records):
    """Pairs whose responses differ a lot in length (1 token against ~40), both orders, plus two short pairs."""
    base = make_preference_records(4)
    out = []
    for i, r in enumerate(base):
        chosen, rejected = [(r.chosen, r.rejected), ("Yes", LONG), (LONG, "No"), (r.chosen, r.rejected)][i]
        out.append(PreferenceRecord(r.id, r.image, r.question, chosen, rejected))
    return out


@pytest.fixture
def lora_model(tiny_llava_loader):
    """The tiny LLaVA with LoRA r4 on the language model, the LoRA weights randomised (peft starts B at zero,
    which would leave A without gradient), dropout off."""
    from bench.train.loop import add_lora, disable_dropout

    model, pre = tiny_llava_loader()
    cfg = TrainConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0)
    model = add_lora(model, cfg)
    disable_dropout(model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
    return model, pre


def _fwd(pre, share: bool) -> ForwardContext:
    cfg = TrainConfig(max_length=512, share_prefix=share)
    pad = pre.tokenizer.pad_token_id if pre.tokenizer.pad_token_id is not None else 0
    return ForwardContext(pre=pre, cfg=cfg, seed=0, epoch=0, device="cpu", pad_id=pad)


def _dpo_step(model, pre, records, sequences, share: bool):
    """Policy and reference forwards, the DPO loss and the LoRA gradients of one step."""
    from bench.train.loop import adapters_off, run_sequences

    model.zero_grad(set_to_none=True)
    fwd = _fwd(pre, share)
    policy, _, raw = run_sequences(model, records, sequences, forward=fwd)
    with torch.no_grad(), adapters_off(model):
        reference, _, ref_raw = run_sequences(model, records, sequences, forward=fwd)
    loss, _ = dpo_stage_loss(StepInputs(records, policy, reference), DpoConfig())
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    return policy, reference, loss.detach(), grads, raw, ref_raw


def _assert_same_step(a, b):
    pol_a, ref_a, loss_a, grads_a, _, _ = a
    pol_b, ref_b, loss_b, grads_b, _, _ = b
    for name in pol_a:
        torch.testing.assert_close(pol_a[name].sum(), pol_b[name].sum(), rtol=0, atol=1e-5)
        torch.testing.assert_close(ref_a[name].sum(), ref_b[name].sum(), rtol=0, atol=1e-5)
        assert torch.equal(pol_a[name].mask, pol_b[name].mask) and torch.equal(pol_a[name].tokens, pol_b[name].tokens)
    torch.testing.assert_close(loss_a, loss_b, rtol=0, atol=1e-6)
    assert grads_a.keys() == grads_b.keys() and grads_a
    assert any(g.abs().sum() > 0 for g in grads_a.values())
    for n in grads_a:
        # float32, two summation orders (packed vs padded attention shapes): agreement to 1e-5 of the tensor's
        # largest gradient (seen: 1.6e-6 on 0.36 on a 2-core x86 CPU); a wrong mask or position is off by 1e-2+
        scale = float(grads_b[n].abs().max())
        torch.testing.assert_close(grads_a[n], grads_b[n], rtol=1e-4, atol=max(1e-6, 1e-5 * scale), msg=n)


def test_packed_pairs_give_the_padded_log_probs_dpo_loss_and_lora_gradients(lora_model, records):
    model, pre = lora_model
    padded = _dpo_step(model, pre, records, [CHOSEN, REJECTED], share=False)
    packed = _dpo_step(model, pre, records, [CHOSEN, REJECTED], share=True)
    assert padded[4].packed is None
    rows = packed[4].packed
    assert rows is not None and rows.batch.input_ids.shape[0] == len(records) == rows.shared_rows
    assert packed[5].packed is not None  # the reference forward packs too
    # one prefix per pair instead of two: fewer tokens than the padded batch
    assert int(rows.batch.attention_mask.sum()) < int(padded[4].batch.attention_mask.sum())
    _assert_same_step(padded, packed)


def test_packed_pairs_match_under_gradient_checkpointing(lora_model, records):
    from bench.train.loop import enable_gradient_checkpointing

    model, pre = lora_model
    enable_gradient_checkpointing(model)
    model.train()
    padded = _dpo_step(model, pre, records[1:3], [CHOSEN, REJECTED], share=False)
    packed = _dpo_step(model, pre, records[1:3], [CHOSEN, REJECTED], share=True)
    assert packed[4].packed is not None
    _assert_same_step(padded, packed)


def test_a_pair_on_different_images_falls_back_to_padded_rows_and_still_matches(lora_model, records):
    model, pre = lora_model
    seqs = [CHOSEN, REJECTED_SHIFTED]
    padded = _dpo_step(model, pre, records, seqs, share=False)
    packed = _dpo_step(model, pre, records, seqs, share=True)
    assert packed[4].packed is None, "no two sequences share image and prompt: the padded path runs"
    _assert_same_step(padded, packed)


def test_sequences_without_a_partner_get_rows_of_their_own_next_to_packed_pairs(lora_model, records):
    from bench.train.loop import run_sequences

    model, pre = lora_model
    seqs = [CHOSEN, REJECTED, CHOSEN_SHIFTED]
    with torch.no_grad():
        padded, _, _ = run_sequences(model, records, seqs, forward=_fwd(pre, False))
        packed, _, raw = run_sequences(model, records, seqs, forward=_fwd(pre, True))
    assert raw.packed is not None and raw.packed.batch.input_ids.shape[0] == 2 * len(records)
    assert raw.packed.shared_rows == len(records)
    for name in padded:
        torch.testing.assert_close(padded[name].sum(), packed[name].sum(), rtol=0, atol=1e-5)


def test_rescoring_other_targets_reads_the_packed_rows_like_the_padded_ones(lora_model, records):
    """POVID's hook scores the arg-max tokens at chosen's positions from the kept hidden states."""
    from bench.train.loop import run_sequences

    model, pre = lora_model
    with torch.no_grad():
        _, _, raw_a = run_sequences(model, records, [CHOSEN, REJECTED], forward=_fwd(pre, False))
        _, _, raw_b = run_sequences(model, records, [CHOSEN, REJECTED], forward=_fwd(pre, True))
        targets = raw_a.argmax_of("rejected")  # any ids of the right lengths: rejected's arg-max, cut or cycled
        alt = [t.repeat(1 + c.numel() // max(1, t.numel()))[: c.numel()]
               for t, c in zip(targets, raw_a.argmax_of("chosen"))]
        a, b = raw_a.rescore("chosen", alt), raw_b.rescore("chosen", alt)
    assert raw_b.packed is not None
    torch.testing.assert_close(a.sum(), b.sum(), rtol=0, atol=1e-5)
    assert torch.equal(a.tokens, b.tokens)


def test_plan_restarts_positions_after_the_prefix_and_masks_the_other_response():
    prompt = [1, 5, 3, 3, 7]
    seqs = [{"input_ids": prompt + [10, 11, 2], "labels": [IGNORE_INDEX] * 5 + [10, 11, 2], "prompt_len": 5},
            {"input_ids": prompt + [12, 2], "labels": [IGNORE_INDEX] * 5 + [12, 2], "prompt_len": 5},
            {"input_ids": [1, 6, 3, 3, 7, 9, 2], "labels": [IGNORE_INDEX] * 5 + [9, 2], "prompt_len": 5}]
    rows = plan_rows(seqs, [0, 0, 1], pad_id=0)
    assert rows.batch.input_ids[0].tolist() == prompt + [10, 11, 2, 12, 2]
    assert rows.positions[0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 5, 6]
    assert rows.segments[0].tolist() == [0] * 5 + [1, 1, 1, 2, 2]
    assert rows.row == [0, 0, 1] and rows.shared_rows == 1
    # the first response token is read from the prefix's last hidden state, the others from their own segment
    assert rows.sources[0] == [4, 5, 6] and rows.targets[0] == [10, 11, 2]
    assert rows.sources[1] == [4, 8] and rows.targets[1] == [12, 2]
    allowed = rows.allowed()[0]
    assert allowed[8, :5].all() and not allowed[8, 5:8].any() and allowed[8, 8]  # rejected: prefix + itself
    assert not allowed[5, 8:].any()  # chosen never sees rejected
    # the third sequence (another image) sits alone in row 1, right-padded with attention mask 0
    assert rows.batch.input_ids[1, :7].tolist() == seqs[2]["input_ids"]
    assert rows.batch.attention_mask[1].tolist() == [1] * 7 + [0] * 3
    assert rows.sources[2] == [4, 5]
    assert plan_rows(seqs[:1] + seqs[2:], [0, 1], pad_id=0) is None  # nothing to share: padded path


def test_other_prompts_never_share_a_row():
    a = {"input_ids": [1, 5, 3, 9, 2], "labels": [IGNORE_INDEX] * 3 + [9, 2], "prompt_len": 3}
    b = {"input_ids": [1, 6, 3, 9, 2], "labels": [IGNORE_INDEX] * 3 + [9, 2], "prompt_len": 3}
    assert plan_rows([a, b], [0, 0], pad_id=0) is None


def test_flash_attention_and_families_without_prefix_sharing_fall_back_with_a_warning(lora_model, records):
    from bench.train import shared_prefix
    from bench.train.loop import run_sequences, llava_of

    model, pre = lora_model
    lm_config = llava_of(model).model.language_model.config
    old = lm_config._attn_implementation
    shared_prefix._warned.clear()
    try:
        lm_config._attn_implementation = "flash_attention_2"
        assert "4-D mask" in shared_prefix.unsupported_reason(llava_of(model))
        with pytest.warns(UserWarning, match="padded path runs instead"):
            assert shared_prefix.plan_for(model, [], [], 0) is None
    finally:
        lm_config._attn_implementation = old
    assert shared_prefix.unsupported_reason(llava_of(model)) is None
    with torch.no_grad():
        _, _, raw = run_sequences(model, records[:1], [CHOSEN, REJECTED], forward=_fwd(pre, True))
    assert raw.packed is not None


def test_qwen2_vl_and_instructblip_declare_no_packed_training():
    from bench.models.family import FAMILIES

    assert not FAMILIES.get("qwen2-vl").prefix_sharing()
    assert not FAMILIES.get("instructblip").fast_paths
    assert FAMILIES.get("llava-1.5").prefix_sharing() and FAMILIES.get("llava-1.5").fast_paths


def test_the_default_path_never_calls_the_packed_code(tiny_llava_loader, make_preference_records, tmp_path,
                                                      monkeypatch):
    import bench.train.loop as loop
    from methods.dpo import DpoMethod
    from tests.test_methods import small_config

    def refuse(*a, **k):
        raise AssertionError("the packed path ran with share_prefix off")

    monkeypatch.setattr(loop, "plan_for", refuse)
    monkeypatch.setattr(loop, "packed_sequence_logps", refuse)
    cfg = small_config("dpo", max_steps=2, save_every=0)
    assert cfg.train.share_prefix is False
    loop.train(DpoMethod(), cfg, tiny_llava_loader, make_preference_records(4), tmp_path / "off", seed=0,
               progress=False)
    assert (tmp_path / "off" / "checkpoint" / "dpo" / "DONE").exists()


def test_share_prefix_enters_identity_and_fingerprint_only_when_on(make_preference_records):
    from bench.config import merge
    from bench.train.loop import run_identity, stage_fingerprint
    from methods.dpo import DpoMethod

    recs = make_preference_records(2)
    method = DpoMethod()
    off, on = DpoConfig(), merge(DpoConfig(), {"train": {"share_prefix": True}})
    stage = method.stages(off)[0]
    assert "share_prefix" not in run_identity(method, off, recs, 0)["config"]["train"]  # older checkpoints stay valid
    assert run_identity(method, on, recs, 0)["config"]["train"]["share_prefix"] is True
    assert stage_fingerprint(recs, off, stage, 0) != stage_fingerprint(recs, on, stage, 0)


def test_cli_trains_tiny_llava_two_steps_with_share_prefix(tmp_path, monkeypatch):
    import bench.train.loop as loop
    from bench.cli import main

    calls = []
    packed_logps = loop.packed_sequence_logps

    def spy(*args, **kwargs):
        calls.append(1)
        return packed_logps(*args, **kwargs)

    monkeypatch.setattr(loop, "packed_sequence_logps", spy)
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "run"
    assert main(["train", "--method", "dpo", "--model", "tiny-llava", "--max-steps", "2", "--out", str(out),
                 "--device", "cpu", "--quiet", "--exact-out", "train.share_prefix=true"]) == 0
    stage = out / "checkpoint" / "dpo"
    assert (stage / "DONE").exists()
    rows = [json.loads(line) for line in (stage / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(r["loss"] == r["loss"] for r in rows)
    identity = json.loads((out / "checkpoint" / "identity.json").read_text())
    assert identity["config"]["train"]["share_prefix"] is True
    assert calls, "tiny-llava (sdpa) must run the packed rows"
