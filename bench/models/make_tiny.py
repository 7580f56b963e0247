"""Tiny random checkpoints of every supported family, built from configs (no download): for tests and smoke runs.

``python -m bench models make-tiny --family llava-1.5|llava-next|qwen2-vl|qwen2.5-vl|instructblip|minigpt4 --out DIR`` writes a folder in the family's
HF layout (``config.json``, ``model.safetensors``, tokenizer and processor files, a chat template where the
family's prompt is one) that ``from_pretrained`` and ``bench … --model DIR`` load offline. The tokenizer is the
project's own byte-level BPE trained on the synthetic world's text (:func:`bench.models.tiny_llava.build_tokenizer`);
the weights are random (seeded), optionally followed by ``--pretrain-steps N`` steps of fine-tuning on the
synthetic world (so that smoke runs' data pipelines get sentences, not random tokens). ``bench_model.json`` (``{"profile": "tiny"}``) makes ``--model DIR`` train with
the embedded tiny-llava's scale profile and build its methods' data on the synthetic world.

Sizes: CLIP vision tower 32 px / patch 8 (16 tokens per 32×32 view), 3 layers of width 64; a 4-layer Llama of
width 128. LLaVA-NeXT: grid pinpoints up to 64×64 (a base view + up to 4 tiles). Qwen2-VL / Qwen2.5-VL: a
2-block vision tower with patch 4 and merge 2, a 4-layer Qwen2 language model with M-RoPE sections (4, 6, 6).
InstructBLIP / MiniGPT-4: :mod:`bench.models.tiny_qformer` (32 query tokens, a 2-layer Q-Former).
"""

from __future__ import annotations

from pathlib import Path

import torch

from bench.errors import BenchError
from bench.io import atomic_write_json, read_jsonl
from bench.models import TinyLlava
from bench.models.families.qwen2_vl import ProcessorParts
from bench.models.family import family_of, prompt_image_input
from bench.models.llava import load_image
from bench.models.loading import make_preprocessor
from bench.models.tiny_llava import build_tiny_llava, build_tokenizer
from bench.train.forward import pad_batch

IMAGE_SIZE, PATCH = 32, 8
FAMILY_NAMES = ("llava-1.5", "llava-next", "qwen2-vl", "qwen2.5-vl", "instructblip", "minigpt4")

# Our own template in the LLaVA-1.6-mistral layout ("[INST] <image>\n{question} [/INST] {answer}</s>"), written
# for the tiny checkpoint; real checkpoints bring theirs.
NEXT_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] "
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %} [/INST]"
    "{% elif m['role'] == 'assistant' %}{% for c in m['content'] %}{% if c['type'] == 'text' %} {{ c['text'] }}"
    "{% endif %}{% endfor %}{{ eos_token }}{% endif %}{% endfor %}"
)


def _vision_text_configs(tokenizer):
    from transformers import CLIPVisionConfig, LlamaConfig

    vision = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                              image_size=IMAGE_SIZE, patch_size=PATCH)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id)
    return vision, text


def _generation_ids(model, tokenizer) -> None:
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id


def build_llava_next(seed: int = 0):
    """An untrained tiny ``LlavaNextForConditionalGeneration`` + ``LlavaNextProcessor``."""
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    tokenizer = build_tokenizer()
    pinpoints = [[32, 32], [32, 64], [64, 32], [64, 64]]
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_grid_pinpoints=pinpoints, image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711])
    vision, text = _vision_text_configs(tokenizer)
    config = LlavaNextConfig(vision_config=vision, text_config=text, image_grid_pinpoints=pinpoints,
                             image_token_id=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-2,
                             vision_feature_select_strategy="default", projector_hidden_act="gelu")
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(config)
    _generation_ids(model, tokenizer)
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH,
                                   vision_feature_select_strategy="default", chat_template=NEXT_CHAT_TEMPLATE,
                                   num_additional_image_tokens=1)  # CLIP's CLS, dropped by "default"
    return model, processor


# Our own chatml template in Qwen2-VL's layout (default system sentence, the image as
# <|vision_start|><|image_pad|><|vision_end|> before the text); real checkpoints bring theirs.
QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ m['role'] }}\n"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_SPECIAL = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
                "<|endoftext|>")


def build_qwen2_vl(seed: int = 0, version: str = "2"):
    """An untrained tiny ``Qwen2VLForConditionalGeneration`` (``version`` "2.5": ``Qwen2_5_VL…``) with the
    tokenizer, image processor and chat template of a processor (patch 4, merge 2: a 48×36 image → grid
    1×8×12 → 24 image tokens)."""
    import transformers

    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tokenizer = build_tokenizer(extra_special=QWEN_SPECIAL, bos_token=None, eos_token="<|im_end|>",
                                pad_token="<|endoftext|>", extra_special_tokens={"image_token": "<|image_pad|>"})
    tid = tokenizer.convert_tokens_to_ids
    image_processor = Qwen2VLImageProcessorPil(patch_size=4, merge_size=2, temporal_patch_size=2,
                                               min_pixels=8 * 8, max_pixels=64 * 64)
    if version == "2":
        config_cls, model_cls = transformers.Qwen2VLConfig, transformers.Qwen2VLForConditionalGeneration
        vision = {"depth": 2, "embed_dim": 64, "hidden_size": 128, "num_heads": 4, "mlp_ratio": 2,
                  "patch_size": 4, "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3}
    else:
        config_cls, model_cls = transformers.Qwen2_5_VLConfig, transformers.Qwen2_5_VLForConditionalGeneration
        vision = {"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 4, "out_hidden_size": 128,
                  "patch_size": 4, "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3,
                  "window_size": 16, "fullatt_block_indexes": [1]}
    config = config_cls(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 128, "intermediate_size": 256,
                     "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
                     "max_position_embeddings": 1024, "rope_scaling": {"type": "mrope", "mrope_section": [4, 6, 6]},
                     "eos_token_id": tid("<|im_end|>"), "pad_token_id": tid("<|endoftext|>"),
                     "bos_token_id": None, "tie_word_embeddings": False},
        vision_config=vision,
        image_token_id=tid("<|image_pad|>"), video_token_id=tid("<|video_pad|>"),
        vision_start_token_id=tid("<|vision_start|>"), vision_end_token_id=tid("<|vision_end|>"),
        tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = model_cls(config)
    _generation_ids(model, tokenizer)
    processor = ProcessorParts(tokenizer, image_processor, QWEN_CHAT_TEMPLATE)  # Qwen2VLProcessor needs torchvision
    return model, processor


def build(family: str, seed: int = 0):
    """(model, processor) of a tiny random checkpoint of ``family``."""
    if family == "llava-1.5":
        return build_tiny_llava(None, seed=seed)
    if family == "llava-next":
        return build_llava_next(seed)
    if family == "qwen2-vl":
        return build_qwen2_vl(seed)
    if family == "qwen2.5-vl":
        return build_qwen2_vl(seed, version="2.5")
    if family in ("instructblip", "minigpt4"):  # Q-Former families: bench.models.tiny_qformer
        from bench.models import tiny_qformer

        return getattr(tiny_qformer, f"build_{family}")(seed)
    raise BenchError(f"make-tiny: unknown family {family!r} (choose from {', '.join(FAMILY_NAMES)})")


def pretrain(model, processor, data_root: Path, steps: int, seed: int = 0, batch_size: int = 16,
             lr: float = 2e-3) -> dict:
    """A short full fine-tuning on the synthetic world's pretraining rows (captions + yes/no questions), through
    the family's preprocessor (its template, image preprocessing and label masks), so that a smoke run's data
    pipelines see sentences in the world's words rather than random tokens. AdamW, cosine schedule, 5% warmup,
    grad-norm clip 1.0 (the tiny-llava recipe's loop, shorter; :mod:`bench.models.tiny_pretrain`)."""
    import random
    import time

    from transformers import get_cosine_schedule_with_warmup

    pre = make_preprocessor(processor, model.config)
    family = family_of(model)
    rows = read_jsonl(Path(data_root) / "pretrain" / "train.jsonl")
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = get_cosine_schedule_with_warmup(opt, max(1, steps // 20), steps)
    images: dict[tuple, tuple] = {}
    aware = getattr(pre, "instruction_aware", False)  # InstructBLIP: the image input depends on the question
    model.train()
    t0, losses = time.perf_counter(), []
    for _ in range(steps):
        batch_rows = rng.sample(rows, batch_size)
        enc, inputs = [], []
        for r in batch_rows:
            key = (r["image"], r["question"] if aware else None)
            if key not in images:
                img = load_image(Path(data_root) / r["image"])
                images[key] = (img.size, prompt_image_input(pre, img, r["question"]))
            size, inp = images[key]
            enc.append(pre.encode_pair(r["question"], r["answer"], 1024, image_size=size))
            inputs.append(inp)
        batch = pad_batch(enc, pre.tokenizer.pad_token_id, list(range(len(enc))))
        pixels, extra = pre.collate(inputs)
        out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, pixel_values=pixels,
                    labels=batch.labels, **extra, **family.generate_inputs(model, batch.input_ids))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.item())
    model.eval()
    tail = losses[-min(20, len(losses)):]
    return {"steps": steps, "batch_size": batch_size, "lr": lr, "final_loss": round(sum(tail) / len(tail), 4),
            "wall_s": round(time.perf_counter() - t0, 1)}


def make_tiny(family: str, out: str | Path, seed: int = 0, pretrain_steps: int = 0,
              data_root: str | Path | None = None) -> Path:
    """Build and save a tiny checkpoint of ``family`` to ``out``; returns the folder. With ``pretrain_steps``,
    first fine-tune it that many steps on the synthetic world (``data_root``, default: the embedded one)."""
    model, processor = build(family, seed)
    info: dict = {}
    if pretrain_steps:
        if data_root is None:
            data_root = TinyLlava().default_data_root()
        torch.manual_seed(seed)
        info = pretrain(model, processor, Path(data_root), pretrain_steps, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    atomic_write_json(out / "bench_model.json", {"profile": "tiny", "family": family, "seed": seed,
                                                 "pretrain": info, "made_by": "python -m bench models make-tiny"})
    return out
