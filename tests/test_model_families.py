"""LLaVA-NeXT, Qwen2-VL and Qwen2.5-VL through the model-family interface, each on a tiny random checkpoint made by
``bench models make-tiny``: the eval engine equals transformers' ``generate`` at batch 1 (batched path and, for
LLaVA-NeXT, prefix sharing; images of different sizes and therefore different image-token counts), LLaVA-NeXT's
chat-template prompt equals the llava-hf processor's ids, the loop's batched forward equals the model's own
forward per sequence (Qwen2-VL: 3-D rotary positions on a right-padded batch), beam search equals batch-1
``generate`` (LLaVA-NeXT through the engine's ``beams`` path), one DPO step through the shared
loop changes every trainable tensor and no frozen one, our ``dpo`` loss equals TRL's ``DPOTrainer`` on the same
batch, and the reference cache and resume work."""

import math

import pytest
import torch
from PIL import Image

from bench.data.preference import PreferenceRecord

SIZES = [(48, 36), (30, 60), (40, 28), (64, 64)]  # different aspect ratios → different any-res grids


FAMILIES = ["llava-next", "qwen2-vl", "qwen2.5-vl"]
_DIRS: dict = {}


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    return request.param


@pytest.fixture(scope="module")
def next_dir(family, tmp_path_factory):
    from bench.models.make_tiny import make_tiny

    if family not in _DIRS:
        _DIRS[family] = make_tiny(family, tmp_path_factory.mktemp(family) / "ckpt", seed=0)
    return _DIRS[family]


@pytest.fixture
def next_loader(next_dir):
    from bench.models.loading import LocalModel, make_preprocessor

    def load():
        model, processor = LocalModel(str(next_dir)).load()
        return model, make_preprocessor(processor, model.config)

    return load


@pytest.fixture
def records(tmp_path):
    from tests.conftest import PAIR_TEXTS

    out = []
    for i, size in enumerate(SIZES):
        img = tmp_path / f"{i}.png"
        Image.new("RGB", size, (50 * i % 256, 120 + 20 * i, 200 - 40 * i)).save(img)
        chosen, rejected = PAIR_TEXTS[i % len(PAIR_TEXTS)]
        q = "Is there a dog in the image?" if chosen in ("Yes", "No") else "Describe this image in detail."
        out.append(PreferenceRecord(f"n{i}", str(img), q, chosen, rejected, rejected_score=float(i % 3 + 1)))
    return out


def test_family_is_chosen_from_model_type_and_prompt_equals_processor_ids(family, next_dir, next_loader, records):
    from bench.models.loading import model_entry

    entry = model_entry(str(next_dir))
    assert entry.family.name == family and entry.resolved_revision is None
    assert entry.train_profile and entry.pipeline_source  # make-tiny's marker: tiny-llava's profile
    model, pre = next_loader()
    counts = set()
    for r in records:
        img = Image.open(r.image).convert("RGB")
        ids = pre.prompt_ids(r.question, img.size)
        counts.add(ids.count(pre.image_token_id))
        if family == "llava-next":
            theirs = pre.processor(images=[img], text=[pre.render(r.question)], return_tensors="pt")["input_ids"][0]
            assert ids == theirs.tolist()
        else:  # Qwen2VLProcessor needs torchvision: the count is the grid's t·h·w / merge²
            grid = pre.image_input(img).extra["image_grid_thw"]
            assert ids.count(pre.image_token_id) == int(grid.prod()) // 4
    assert len(counts) > 1, "image sizes should give different token counts"


def test_loop_forward_equals_the_models_own_forward_per_sequence(family, next_loader, records):
    from bench.train.forward import pad_batch, sequence_logps

    model, pre = next_loader()
    imgs = [Image.open(r.image).convert("RGB") for r in records]
    encs = [pre.encode_pair(r.question, r.chosen, 1024, image_size=im.size) for r, im in zip(records, imgs)]
    batch = pad_batch(encs, pre.tokenizer.pad_token_id, list(range(len(encs))))
    pixels, extra = pre.images(imgs)
    with torch.no_grad():
        ours, _, _ = sequence_logps(model, batch, pixels, image_extra=extra)
        for i, (e, im) in enumerate(zip(encs, imgs)):
            pix, ex = pre.images([im])
            ids = torch.tensor([e["input_ids"]])
            if family.startswith("qwen"):
                ex["mm_token_type_ids"] = (ids == pre.image_token_id).int()
            logits = model(input_ids=ids, pixel_values=pix, **ex).logits[0, :-1].float()
            labels = torch.tensor(e["labels"][1:])
            keep = labels != -100
            want = torch.log_softmax(logits, -1)[keep].gather(-1, labels[keep][:, None]).squeeze(-1)
            torch.testing.assert_close(ours[i], want, atol=1e-5, rtol=0)


def test_labels_cover_answer_and_closing_tokens_only(family, next_loader, records):
    from bench.models.llava import IGNORE_INDEX

    _, pre = next_loader()
    enc = pre.encode_pair("Is there a dog?", "Yes", 512, image_size=(48, 36))
    supervised = [t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != IGNORE_INDEX]
    lead = " " if family == "llava-next" else ""  # "[/INST] Yes</s>" vs "assistant\nYes<|im_end|>"
    assert supervised == pre.tokenizer(lead + "Yes", add_special_tokens=False)["input_ids"] + [pre.tokenizer.eos_token_id]
    assert enc["input_ids"][: enc["prompt_len"]] == pre.prompt_ids("Is there a dog?", (48, 36))


def test_engine_outputs_equal_hf_generate_at_batch_1(family, next_loader, records):
    from bench.benchmark import EvalItem, GenerationSettings
    from bench.eval.engine import generate_batch, generate_with_prefix

    model, pre = next_loader()
    gen = GenerationSettings(max_new_tokens=6)
    items = [EvalItem(r.id, r.image, q) for r in records for q in ("Is there a dog in the image?", "Describe.")]
    reference = [generate_batch(model, pre, [it], gen, "cpu", use_hf_generate=True)[0] for it in items]
    batched = generate_batch(model, pre, items, gen, "cpu")  # mixed sizes in one left-padded batch
    assert batched == reference
    assert len(set(reference)) > 1
    if family == "llava-next":  # Qwen2-VL's 3-D positions do not allow prefix sharing (the family says so)
        shared = [t for k in range(0, len(items), 2) for t in generate_with_prefix(model, pre, items[k:k + 2], gen, "cpu")]
        assert shared == reference


def test_beam_search_path_equals_hf_generate_at_batch_1(family, next_loader, records):
    from bench.benchmark import EvalItem, GenerationSettings
    from bench.eval.engine import generate_batch
    from bench.eval.fastpath import choose_path, stream

    model, pre = next_loader()
    gen = GenerationSettings(max_new_tokens=6, num_beams=3)
    items = [EvalItem(r.id, r.image, q) for r in records for q in ("Describe.", "What is in the image, in detail?")]
    reference = {it.id: generate_batch(model, pre, [it], gen, "cpu", use_hf_generate=True)[0] for it in items}
    path = choose_path(model, items, gen, 8)
    # Qwen2-VL's 3-D positions keep it on generate; LLaVA-NeXT's any-res images give prompts of different lengths
    assert path == ("beams" if family == "llava-next" else "generate")
    texts = {it.id: t for chunk, out, _ in stream(model, pre, items, gen, "cpu", 8) for it, t in zip(chunk, out)}
    assert texts == reference


def _train(loader, records, out, max_steps, method="dpo", resume=False, save_every=0):
    from bench.registry import METHODS
    from bench.train.loop import train
    from tests.test_methods import small_config

    cfg = small_config(method, max_steps=max_steps, save_every=save_every)
    return train(METHODS.get(method)(), cfg, loader, records, out, seed=0, resume=resume, progress=False)


def test_dpo_step_changes_every_trainable_tensor_and_no_frozen_one(next_dir, next_loader, records, tmp_path):
    from bench.models.loading import apply_checkpoint

    summary = _train(next_loader, records, tmp_path, max_steps=1)
    assert math.isfinite(summary["dpo"]["loss"])
    base = next_loader()[0].state_dict()
    merged = apply_checkpoint(next_loader()[0], tmp_path / "checkpoint").state_dict()
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    expected = {k for k in base if "language_model" in k and k.endswith(".weight") and any(t in k for t in targets)}
    assert changed == expected


def test_reference_cache_is_written_and_resume_matches_uninterrupted_run(next_loader, records, tmp_path, monkeypatch):
    import json

    import bench.train.loop as loop

    _train(next_loader, records, tmp_path / "full", max_steps=3, save_every=1)
    cache = tmp_path / "full" / "checkpoint" / "dpo" / "ref_logps.safetensors"
    assert cache.exists()
    from safetensors.torch import load_file

    assert len(load_file(str(cache))) == 2 * len(records)
    real_append = loop.append_jsonl

    class Killed(Exception):
        pass

    def append(path, rows):
        real_append(path, rows)
        if rows[0]["step"] == 2:
            raise Killed()

    monkeypatch.setattr(loop, "append_jsonl", append)
    with pytest.raises(Killed):
        _train(next_loader, records, tmp_path / "part", max_steps=3, save_every=1)
    monkeypatch.undo()
    _train(next_loader, records, tmp_path / "part", max_steps=3, save_every=1, resume=True)
    log = lambda d: [json.loads(x) for x in (d / "checkpoint" / "dpo" / "log.jsonl").read_text().splitlines()]  # noqa: E731
    full, part = log(tmp_path / "full"), log(tmp_path / "part")
    assert [r["step"] for r in part] == [1, 2, 3]
    assert [r["loss"] for r in part] == pytest.approx([r["loss"] for r in full], abs=1e-6)


def test_dpo_loss_and_lora_gradients_equal_trl_dpo_trainer(family, next_dir, next_loader, records, tmp_path):
    pytest.importorskip("trl", reason="TRL is not importable: the parity test needs trl>=1.0 (DPOTrainer)")
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoProcessor
    from trl import DPOConfig, DPOTrainer

    from bench.train.config import TrainConfig
    from bench.train.loop import add_lora, adapters_off, disable_dropout, encode, run_sequences
    from bench.train.method import ForwardContext, StepInputs
    from methods.dpo import CHOSEN, REJECTED, DpoConfig, dpo_stage_loss

    beta = 0.1
    base, pre = next_loader()
    cfg = TrainConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0, max_length=512)
    model = add_lora(base, cfg)
    disable_dropout(model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # non-zero B: policy ≠ reference and every LoRA tensor gets a gradient
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    lora_state = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    pad_id = pre.tokenizer.pad_token_id
    model.train()
    fwd = ForwardContext(pre=pre, cfg=cfg, seed=0, epoch=0, device="cpu", pad_id=pad_id)
    policy, _, _ = run_sequences(model, records, [CHOSEN, REJECTED], forward=fwd)
    with torch.no_grad(), adapters_off(model):
        reference, _, _ = run_sequences(model, records, [CHOSEN, REJECTED], forward=fwd)
    loss, metrics = dpo_stage_loss(StepInputs(records, policy, reference), DpoConfig(beta=beta))
    loss.backward()
    ours = {n: p.grad.detach().clone() for n, p in model.named_parameters() if "lora_" in n}

    trl_base, _ = next_loader()
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, bias="none",
                      target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$")
    args = DPOConfig(output_dir=str(tmp_path / "trl"), beta=beta, loss_type=["sigmoid"], precompute_ref_log_probs=False,
                     report_to="none", use_cpu=True, bf16=False, fp16=False, max_length=None, disable_dropout=True,
                     seed=0, per_device_train_batch_size=len(records))
    if family == "llava-next":
        data = Dataset.from_list([{"images": [Image.open(r.image).convert("RGB")], "prompt": r.question,
                                   "chosen": r.chosen, "rejected": r.rejected} for r in records])
        processing = AutoProcessor.from_pretrained(next_dir)
    else:  # Qwen2VLProcessor needs torchvision; the batch below is built by us, so the tokenizer suffices
        data = Dataset.from_list([{"prompt": r.question, "chosen": r.chosen, "rejected": r.rejected} for r in records])
        processing = pre.tokenizer
    trainer = DPOTrainer(model=trl_base, args=args, train_dataset=data, processing_class=processing, peft_config=lora)
    trl_model = trainer.model
    with torch.no_grad():
        named = dict(trl_model.named_parameters())
        assert set(lora_state) <= set(named)
        for n, v in lora_state.items():
            named[n].copy_(v)
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
    rows = torch.tensor([enc.image_index[r] for r in order])
    if family == "llava-next":
        images = {"pixel_values": enc.pixels[rows], "image_sizes": enc.image_extra["image_sizes"][rows]}
    else:  # the processor's layout: every sequence's image patches in row order, its grid, the token types
        pix, extra = pre.images([Image.open(records[enc.keys[r][0]].image).convert("RGB") for r in order])
        images = {"pixel_values": pix, **extra, "mm_token_type_ids": (input_ids == pre.image_token_id).int()}
    inputs = {"input_ids": input_ids, "attention_mask": attention, **images, "completion_mask": completion}
    trl_model.train()
    trl_loss = trainer.compute_loss(trl_model, inputs)
    trl_loss.backward()
    theirs = {n: p.grad for n, p in trl_model.named_parameters() if "lora_" in n}

    assert abs(loss.item() - trl_loss.item()) < 1e-5
    logged = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
        assert abs(metrics[key].item() - logged[key]) < 1e-5, key
    assert abs(metrics["rewards/margins"].item()) > 1e-4
    assert set(ours) == set(theirs)
    worst = max((ours[n] - theirs[n]).abs().max().item() for n in ours)
    assert worst < 1e-5, f"largest LoRA gradient difference {worst:.2e}"
