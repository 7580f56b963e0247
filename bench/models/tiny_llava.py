"""``tiny-llava``: the embedded default model — a real ``LlavaForConditionalGeneration`` of ~1M parameters.

Built from configs (CLIP vision tower 32 px / patch 8 → 16 image tokens; a 4-layer Llama), with a
byte-level BPE tokenizer that the project trains itself with the ``tokenizers`` library on the
synthetic world's text, saved and loaded as a normal HF checkpoint directory (config, safetensors,
tokenizer, processor). The shipped checkpoint in ``bench/assets/tiny-llava`` is this model after
the pretraining recipe in :mod:`bench.models.tiny_pretrain` (see its RECIPE.md): it describes the
glyph images and answers yes/no questions, and hallucinates the planted co-occurrence partners.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bench.data.synthetic import CAPTION_PROMPT
from bench.data.synthetic_scene import CATEGORIES, article
from bench.errors import BenchError
from bench.models.llava import VICUNA_V1_SYSTEM

ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "tiny-llava"
IMAGE_SIZE, PATCH = 32, 8


def corpus_lines() -> list[str]:
    """Every text the synthetic world can produce (templates × category names)."""
    # on use (start-up time): importing any metrics module imports every protocol (metrics/__init__.py)
    from metrics.mhalubench import PROMPT as DETECT_PROMPT

    names = [name for _, name, _, _ in CATEGORIES]
    lines = [VICUNA_V1_SYSTEM, f"USER: <image>\n{CAPTION_PROMPT} ASSISTANT:", "Please describe this image in detail.",
             "Answer the question using a single word or phrase.", "Yes", "No", "Yes.", "No.", "yes", "no"]
    for a in names:
        lines.append(f"Is there {article(a)} {a} in the image?")
        lines.append(f"There is {article(a)} {a} in the image.")
        for b in names:
            lines.append(f"The image shows {article(a)} {a}, {article(b)} {b} and {article(a)} {a}.")
    lines.append("There are 1 2 3 4 5 objects in the image.")
    lines += [DETECT_PROMPT.format(claim=f"There is {article(a)} {a} in the image.") for a in names]
    lines += ["hallucination", "non-hallucination"]
    # responses as they follow the prompt (" Yes", " The image shows ...") so that their leading
    # space merges with the first word
    lines += [f"ASSISTANT: {ln}" for ln in lines if ln.startswith(("The image", "Yes", "No", "yes", "no", "There", "hallu", "non-"))]
    return lines


def build_tokenizer(vocab_size: int = 512, extra_special: tuple[str, ...] = (), **token_names):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size,
                                  special_tokens=["<unk>", "<s>", "</s>", "<image>", "<pad>", *extra_special],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    lines = corpus_lines()
    tok.train_from_iterator(lines * 20 + [VICUNA_V1_SYSTEM] * 400, trainer=trainer)
    names = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>",
             "extra_special_tokens": {"image_token": "<image>"}, **token_names}  # other families: their names
    return PreTrainedTokenizerFast(tokenizer_object=tok, **names)


def build_tiny_llava(out_dir: str | Path | None = None, seed: int = 0):
    """The untrained tiny model + processor; saved to ``out_dir`` when given. Returns (model, processor)."""
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    tokenizer = build_tokenizer()
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    image_processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                         crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                                       image_size=IMAGE_SIZE, patch_size=PATCH),
        text_config=LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256,
                                num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                                max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        image_token_id=image_token_id, vision_feature_layer=-2, vision_feature_select_strategy="default",
        projector_hidden_act="gelu")
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH,
                               vision_feature_select_strategy="default")
    if out_dir is not None:
        save(model, processor, out_dir)
    return model, processor


def save(model, processor, out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    return out_dir


def load(path: str | Path = ASSET_DIR, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    path = Path(path)
    if not (path / "config.json").exists():
        raise BenchError(f"{path}: tiny-llava checkpoint missing; rebuild it with"
                         " `python -m bench.models.tiny_pretrain --out <dir>` (see RECIPE.md)")
    model = LlavaForConditionalGeneration.from_pretrained(path, dtype=dtype, local_files_only=True)
    processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    return model.to(device).eval(), processor
