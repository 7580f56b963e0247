"""InstructBLIP and MiniGPT-4 (HA-DPO's other base models) through the model-family interface, on tiny random
checkpoints made by ``bench models make-tiny``: the engine equals each family's reference generation path at
batch 1 (InstructBLIP: ``InstructBlipProcessor`` + ``InstructBlipForConditionalGeneration.generate``; MiniGPT-4:
the original's ``Chat.get_context_emb`` embedding concatenation + the LLM's ``generate``), the MiniGPT-4
assembly has the original's shapes, prompt and image-token positions, the loop's forward equals the model's own,
and one DPO step changes every trainable tensor and no frozen one."""

import math

import pytest
import torch
from PIL import Image

from bench.data.preference import PreferenceRecord

FAMILIES = ["instructblip", "minigpt4"]
SIZES = [(48, 36), (30, 60), (40, 28)]
_DIRS: dict = {}


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    return request.param


def _ckpt(family, tmp_path_factory):
    from bench.models.make_tiny import make_tiny

    if family not in _DIRS:
        _DIRS[family] = make_tiny(family, tmp_path_factory.mktemp(family) / "ckpt", seed=0)
    return _DIRS[family]


@pytest.fixture(scope="module")
def ckpt(family, tmp_path_factory):
    return _ckpt(family, tmp_path_factory)


@pytest.fixture
def loader(ckpt):
    return _loader(ckpt)


@pytest.fixture
def ib_loader(tmp_path_factory):
    return _loader(_ckpt("instructblip", tmp_path_factory))


@pytest.fixture
def mg_loader(tmp_path_factory):
    return _loader(_ckpt("minigpt4", tmp_path_factory))


def _loader(ckpt):
    """The tiny checkpoint with every weight moved by seeded noise (std 0.1, the same on every load): an
    untrained tiny model at its init gives one constant answer to every input, which would make the equality
    tests vacuous."""
    from bench.models.loading import LocalModel, make_preprocessor

    def load():
        model, processor = LocalModel(str(ckpt)).load()
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
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
        out.append(PreferenceRecord(f"q{i}", str(img), q, chosen, rejected, rejected_score=float(i % 3 + 1)))
    return out


def _items(records):
    from bench.benchmark import EvalItem

    return [EvalItem(f"{r.id}-{k}", r.image, q) for r in records
            for k, q in enumerate(("Is there a dog in the image?", "Describe the image."))]


def test_family_is_chosen_from_model_type_and_marker_gives_tiny_profile(family, ckpt):
    from bench.models.loading import model_entry

    entry = model_entry(str(ckpt))
    assert entry.family.name == family
    assert entry.train_profile and entry.pipeline_source


def test_instructblip_engine_equals_processor_and_generate_at_batch_1(ib_loader, records):
    from bench.benchmark import GenerationSettings
    from bench.eval.engine import generate_batch

    model, pre = ib_loader()
    assert model.config.num_query_tokens == 32
    gen = GenerationSettings(max_new_tokens=6)
    items = _items(records)
    reference = []
    for it in items:
        img = Image.open(it.image).convert("RGB")
        inputs = pre.processor(images=img, text=it.question, return_tensors="pt")
        # our prompt and Q-Former ids are the processor's
        assert pre.prompt_ids(it.question, img.size) == inputs["input_ids"][0].tolist()
        assert pre.image_input(img, it.question).extra["qformer_input_ids"].tolist() == inputs["qformer_input_ids"][0].tolist()
        out = model.generate(**inputs, max_new_tokens=6, do_sample=False, num_beams=1,
                             pad_token_id=pre.tokenizer.pad_token_id, eos_token_id=pre.tokenizer.eos_token_id)
        n = inputs["input_ids"].shape[1]
        reference.append(pre.tokenizer.decode(out[0, n:], skip_special_tokens=True).strip())
    batched = generate_batch(model, pre, items, gen, "cpu")  # two questions per image, left-padded together
    assert batched == reference
    assert len(set(reference)) > 1


def test_instructblip_features_depend_on_the_question_and_prefix_sharing_is_off(ib_loader, records):
    from bench.models.family import family_of

    model, pre = ib_loader()
    img = Image.open(records[0].image).convert("RGB")
    pix, extra = pre.images([img, img], ["Is there a dog?", "Describe the image in detail."])
    with torch.no_grad():
        feats = family_of(model).image_features(model, pix, extra)
    assert feats.shape == (2, 32, model.config.text_config.hidden_size)
    assert not torch.allclose(feats[0], feats[1])
    assert not family_of(model).prefix_sharing() and not family_of(model).own_greedy()


def _original_minigpt4_answer(model, pre, image, question, max_new_tokens):
    """MiniGPT-4's own path, written from its ``Chat.get_context_emb`` / ``Chat.answer``: render
    ``CONV_VISION_LLama2``, split at ``<ImageHere>``, tokenise the first segment with BOS and the second without,
    concatenate [seg0 embeds, image embeds, seg1 embeds] and call the LLM's ``generate`` on the embeddings."""
    conv = ("Give the following image: <Img>ImageContent</Img>. You will be able to see the image once I provide it to"
            " you. Please answer my questions." + "<s>[INST] " + "<Img><ImageHere></Img>" + " " + question + " [/INST] ")
    seg0, seg1 = conv.strip().split("<ImageHere>")
    tok = pre.tokenizer
    ids0 = [tok.bos_token_id] + tok(seg0, add_special_tokens=False)["input_ids"]
    ids1 = tok(seg1, add_special_tokens=False)["input_ids"]
    emb = model.language_model.get_input_embeddings()
    pixels = pre.image_processor(images=[image], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        vis = model.vision_model(pixel_values=pixels).last_hidden_state  # ln_vision(ViT(x))
        q = model.qformer(query_embeds=model.query_tokens.expand(1, -1, -1), encoder_hidden_states=vis).last_hidden_state
        img_emb = model.llama_proj(q)
        embs = torch.cat([emb(torch.tensor([ids0])), img_emb, emb(torch.tensor([ids1]))], dim=1)
        out = model.language_model.generate(inputs_embeds=embs, max_new_tokens=max_new_tokens, do_sample=False,
                                            num_beams=1, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0], skip_special_tokens=True).strip(), len(ids0)


def test_minigpt4_engine_equals_the_originals_embedding_path(mg_loader, records):
    from bench.benchmark import GenerationSettings
    from bench.eval.engine import generate_batch, generate_with_prefix

    model, pre = mg_loader()
    gen = GenerationSettings(max_new_tokens=6)
    items = _items(records)
    reference = [_original_minigpt4_answer(model, pre, Image.open(it.image).convert("RGB"), it.question, 6)[0]
                 for it in items]
    assert generate_batch(model, pre, items, gen, "cpu") == reference  # own greedy loop, left-padded batch
    assert [generate_batch(model, pre, [it], gen, "cpu", use_hf_generate=True)[0] for it in items] == reference
    shared = [t for k in range(0, len(items), 2) for t in generate_with_prefix(model, pre, items[k:k + 2], gen, "cpu")]
    assert shared == reference  # prefix sharing applies: the Q-Former sees no text
    assert len(set(reference)) > 1


def test_minigpt4_assembly_has_the_originals_shapes_prompt_and_image_positions(mg_loader):
    from bench.models.families.minigpt4 import render_prompt

    model, pre = mg_loader()
    cfg = model.config
    # 32 query tokens into a Q-Former without a text branch; all 32 outputs projected to the LLM width
    assert model.query_tokens.shape == (1, 32, cfg.qformer_config.hidden_size)
    assert not hasattr(model.qformer, "embeddings") or getattr(model.qformer.embeddings, "word_embeddings", None) is None
    assert all(not hasattr(layer, "intermediate") for layer in model.qformer.encoder.layer)  # query FFN only
    assert model.llama_proj.weight.shape == (cfg.text_config.hidden_size, cfg.qformer_config.hidden_size)
    n_patches = (cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2
    img = Image.new("RGB", (40, 30), (10, 200, 30))
    pixels = pre.images([img])[0]
    assert pixels.shape[-2:] == (cfg.vision_config.image_size,) * 2  # resized to the ViT's square, no crop/pad
    with torch.no_grad():
        assert model.vision_model(pixel_values=pixels).last_hidden_state.shape[1] == n_patches + 1  # + CLS
        assert model.get_image_features(pixels).shape == (1, 32, cfg.text_config.hidden_size)
    # the Llama-2 chat prompt HA-DPO evaluates with, and where the image embeddings go
    text = render_prompt("Is there a cup?")
    assert text == ("Give the following image: <Img>ImageContent</Img>. You will be able to see the image once I"
                    " provide it to you. Please answer my questions.<s>[INST] <Img><ImageHere></Img> Is there a cup?"
                    " [/INST]")
    ids = pre.prompt_ids("Is there a cup?")
    _, first = _original_minigpt4_answer(model, pre, img, "Is there a cup?", 1)
    positions = [k for k, t in enumerate(ids) if t == cfg.image_token_id]
    assert positions == list(range(first, first + 32))
    assert ids[0] == pre.tokenizer.bos_token_id
    assert pre.tokenizer.convert_tokens_to_ids("<s>") in ids[1:first]  # the literal <s> before [INST]
    assert pre.tokenizer.decode(ids[first + 32:]) == "</Img> Is there a cup? [/INST]"


def test_loop_forward_equals_the_models_own_forward_per_sequence(family, loader, records):
    from bench.models.family import prompt_images
    from bench.train.forward import pad_batch, sequence_logps

    model, pre = loader()
    imgs = [Image.open(r.image).convert("RGB") for r in records]
    encs = [pre.encode_pair(r.question, r.chosen, 1024, image_size=im.size) for r, im in zip(records, imgs)]
    batch = pad_batch(encs, pre.tokenizer.pad_token_id, list(range(len(encs))))
    pixels, extra = prompt_images(pre, imgs, [r.question for r in records])
    with torch.no_grad():
        ours, _, _ = sequence_logps(model, batch, pixels, image_extra=extra)
        for i, (e, im, r) in enumerate(zip(encs, imgs, records)):
            pix, ex = prompt_images(pre, [im], [r.question])
            logits = model(input_ids=torch.tensor([e["input_ids"]]), pixel_values=pix, **ex).logits[0, :-1].float()
            labels = torch.tensor(e["labels"][1:])
            keep = labels != -100
            want = torch.log_softmax(logits, -1)[keep].gather(-1, labels[keep][:, None]).squeeze(-1)
            torch.testing.assert_close(ours[i], want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["dpo", "ha-dpo"])
def test_dpo_step_changes_every_trainable_tensor_and_no_frozen_one(family, loader, records, tmp_path, method):
    """``dpo``: LoRA on the LLM only. ``ha-dpo`` (its LLaVA default ``train_projector``): the projection too —
    ``language_projection`` / ``llama_proj``, the family's projector; never the ViT, Q-Former or query tokens."""
    from bench.models.family import family_of
    from bench.models.loading import apply_checkpoint
    from bench.registry import METHODS
    from bench.train.loop import train
    from tests.test_methods import small_config

    cfg = small_config(method, max_steps=1)
    summary = train(METHODS.get(method)(), cfg, loader, records, tmp_path, seed=0, progress=False)
    assert math.isfinite(summary["dpo"]["loss"])
    base = loader()[0].state_dict()
    merged = apply_checkpoint(loader()[0], tmp_path / "checkpoint").state_dict()
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    expected = {k for k in base if k.startswith("language_model.") and k.endswith(".weight")
                and any(t in k for t in targets)}
    if cfg.train.train_projector:
        prefix = family_of(loader()[0]).projector_prefix
        expected |= {k for k in base if k.startswith(prefix)}
    assert expected and changed == expected  # vision model, Q-Former, query tokens, projection: unchanged


def test_minigpt4_assembles_from_blip2_projection_pth_and_llama_folders(tmp_path):
    """The three released parts in their own layouts (BLIP-2 safetensors with T5-side keys to ignore, the
    projection as a ``torch.save`` pickle of tensors, a Llama folder) become one folder whose weights are the
    parts', with ``<ImageHere>`` added as the placeholder."""
    from safetensors.torch import save_file
    from transformers import Blip2Config

    from bench.models.assembly import assemble
    from bench.models.minigpt4_model import MiniGPT4ForConditionalGeneration
    from bench.models.tiny_qformer import build_minigpt4

    model, processor = build_minigpt4(seed=3)
    sd = model.state_dict()
    blip2 = tmp_path / "blip2"
    blip2.mkdir()
    cfg = model.config
    Blip2Config(vision_config=cfg.vision_config.to_dict(), qformer_config=cfg.qformer_config.to_dict(),
                text_config=cfg.text_config.to_dict(), num_query_tokens=32).save_pretrained(blip2)
    parts = {k: v.clone() for k, v in sd.items() if k.startswith(("vision_model.", "qformer.", "query_tokens"))}
    parts["language_projection.weight"] = torch.zeros(3, 3)  # BLIP-2's own T5 projection: not MiniGPT-4's
    save_file(parts, str(blip2 / "model.safetensors"))
    proj = tmp_path / "pretrained_minigpt4_llama2_7b.pth"
    torch.save({"model": {"llama_proj.weight": sd["llama_proj.weight"], "llama_proj.bias": sd["llama_proj.bias"]}},
               proj)
    llama = tmp_path / "llama"
    model.language_model.save_pretrained(llama)
    processor.tokenizer.save_pretrained(llama)

    out = assemble(blip2, proj, llama, tmp_path / "minigpt4")
    loaded = MiniGPT4ForConditionalGeneration.from_pretrained(out)
    tok = processor.tokenizer.__class__.from_pretrained(out)
    assert loaded.config.model_type == "minigpt4" and loaded.config.num_query_tokens == 32
    assert loaded.config.image_token_id == tok.convert_tokens_to_ids("<ImageHere>") == len(processor.tokenizer)
    got = loaded.state_dict()
    for k, v in sd.items():
        if k.endswith(("embed_tokens.weight", "lm_head.weight")):
            assert torch.equal(got[k][: v.shape[0]], v) and got[k].shape[0] == v.shape[0] + 1
        else:
            assert torch.equal(got[k], v), k
    assert "language_projection.weight" not in got
    # a pickle holding anything but tensors is refused by weights_only
    bad = tmp_path / "bad.pth"
    torch.save({"model": {"llama_proj.weight": object()}}, bad)
    with pytest.raises(Exception, match="weights_only"):
        assemble(blip2, bad, llama, tmp_path / "x")


def test_offline_minigpt4_and_instructblip_names_fail_at_once_naming_downloads_and_env_var(tmp_path, monkeypatch,
                                                                                            capsys):
    from bench.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("BENCH_MODEL_MINIGPT4_LLAMA2_7B", raising=False)
    monkeypatch.delenv("BENCH_MODEL_INSTRUCTBLIP_13B", raising=False)
    assert main(["run", "--methods", "ha-dpo", "--model", "minigpt4-llama2-7b", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    for part in ("hf download Salesforce/blip2-flan-t5-xxl", "hf download meta-llama/Llama-2-7b-chat-hf",
                 "pretrained_minigpt4_llama2_7b.pth", "bench models assemble-minigpt4", "BENCH_MODEL_MINIGPT4_LLAMA2_7B"):
        assert part in err
    assert main(["eval", "--model", "instructblip-13b", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "hf download Salesforce/instructblip-vicuna-13b" in err and "BENCH_MODEL_INSTRUCTBLIP_13B" in err
    assert not (tmp_path / "r").exists()


def test_paper_view_matches_hadpo_instructblip_and_minigpt4_rows_to_run_records(tmp_path):
    from bench.leaderboard.papers import paper_table
    from tests.test_leaderboard_papers import _record

    out = tmp_path / "runs"
    _record(out, "instructblip-13b", "ha-dpo", {
        "pope-hadpo": ("pope", {"random/accuracy": 0.89836, "adversarial/f1": 0.7},
                       {"random/accuracy": [0.885, 0.91], "adversarial/f1": [0.68, 0.72]})})
    _record(out, "minigpt4-llama2-7b", "base", {
        "pope-hadpo": ("pope", {"random/accuracy": 0.5113}, {"random/accuracy": [0.49, 0.53]})})
    text = paper_table("ha-dpo", out)
    rows = {tuple(c.strip() for c in line.split("|")[1:7]): [c.strip() for c in line.split("|")[7:12]]
            for line in text.splitlines() if line.startswith(("| InstructBLIP", "| MiniGPT-4"))}
    assert rows[("InstructBLIP-13B", "HA-DPO", "pope", "random", "accuracy", "pope-hadpo")][:2] == ["89.83", "89.83"]
    assert rows[("InstructBLIP-13B", "HA-DPO", "pope", "random", "accuracy", "pope-hadpo")][4] == "✓ in CI"
    assert rows[("InstructBLIP-13B", "HA-DPO", "pope", "adversarial", "f1", "pope-hadpo")][1] == "70.00"
    assert rows[("InstructBLIP-13B", "HA-DPO", "pope", "adversarial", "f1", "pope-hadpo")][4] == "✗ outside CI"
    assert rows[("MiniGPT-4-Llama2-7B", "base", "pope", "random", "accuracy", "pope-hadpo")][:2] == ["51.13", "51.13"]
    assert rows[("MiniGPT-4-Llama2-7B", "HA-DPO", "pope", "random", "accuracy", "pope-hadpo")][1] == "—"


def test_minigpt4_entry_loads_the_folder_its_env_var_names(tmp_path_factory, monkeypatch):
    from bench.models.loading import model_entry

    folder = _ckpt("minigpt4", tmp_path_factory)
    monkeypatch.setenv("BENCH_MODEL_MINIGPT4_LLAMA2_7B", str(folder))
    entry = model_entry("minigpt4-llama2-7b")
    assert entry.family.name == "minigpt4" and entry.weights_source() == {"path": str(folder)}
    assert entry.train_profile["ha-dpo"]["train"]["lora_targets"] == ["q_proj", "k_proj", "v_proj"]
    model, processor = entry.load()
    assert type(model).__name__ == "MiniGPT4ForConditionalGeneration" and processor.tokenizer is not None


def test_lora_vision_step_changes_every_linear_of_vit_qformer_projection_and_llm(family, loader, records, tmp_path):
    """OPA-DPO's ``lora_vision`` (LoRA on every linear layer) on a Q-Former family: one step changes exactly the
    linear weights of the ViT layers, the Q-Former, the projection and the LLM's targets."""
    import re

    from bench.models.family import family_of
    from bench.models.loading import apply_checkpoint
    from bench.registry import METHODS
    from bench.train.loop import train
    from tests.test_methods import small_config

    cfg = small_config("dpo", max_steps=1, lora_vision=True)
    train(METHODS.get("dpo")(), cfg, loader, records, tmp_path, seed=0, progress=False)
    base_model = loader()[0]
    base = base_model.state_dict()
    merged = apply_checkpoint(loader()[0], tmp_path / "checkpoint").state_dict()
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    pattern = (rf".*language_model.*\.({'|'.join(cfg.train.lora_targets)})$|"
               + family_of(base_model).vision_lora_pattern(base_model.config, [], []))
    expected = {f"{name}.weight" for name, mod in base_model.named_modules()
                if isinstance(mod, torch.nn.Linear) and re.fullmatch(pattern, name)}
    assert any(k.startswith("vision_model.") for k in expected) and any(k.startswith("qformer.") for k in expected)
    assert changed == expected
