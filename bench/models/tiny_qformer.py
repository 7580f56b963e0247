"""Tiny random InstructBLIP and MiniGPT-4 checkpoints (``bench models make-tiny --family instructblip|minigpt4``),
built from configs in the real layouts — no download.

Both: a 2-layer vision model of width 64 (32 px images, patch 8 → 16 patches + CLS), **32 query tokens** (the
real count) into a 2-layer Q-Former of width 64 (cross-attention every layer), a linear projection, and the
4-layer Llama of width 128 the other tiny families use, with the project's byte-level BPE tokenizer
(:func:`bench.models.tiny_llava.build_tokenizer`; ``<image>`` is the placeholder token). InstructBLIP's Q-Former
reads the instruction, tokenised by a second copy of that tokenizer (the real one is BERT's WordPiece; the tiny
checkpoint has no BERT vocabulary to ship). MiniGPT-4's Q-Former has no text branch
(``use_qformer_text_input=False``), as in the original. Query tokens are random (normal, std 0.02), not zero, so
that the image reaches the language model of an untrained checkpoint.
"""

from __future__ import annotations

import torch

from bench.models.tiny_llava import build_tokenizer

IMAGE_SIZE, PATCH, NUM_QUERY = 32, 8, 32
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def _parts(tokenizer):
    from transformers import LlamaConfig

    vision = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "image_size": IMAGE_SIZE, "patch_size": PATCH, "qkv_bias": True}
    qformer = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
               "cross_attention_frequency": 1, "encoder_hidden_size": 64, "max_position_embeddings": 256}
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    return vision, qformer, text


def _image_processor():
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    return BlipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=CLIP_MEAN,
                                 image_std=CLIP_STD)


def _finish(model, language_model, tokenizer, seed: int):
    torch.manual_seed(seed + 1)
    with torch.no_grad():
        model.query_tokens.normal_(0.0, 0.02)
    for gc in (getattr(model, "generation_config", None), language_model.generation_config):
        if gc is not None:
            gc.pad_token_id, gc.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id
            gc.bos_token_id = tokenizer.bos_token_id
    return model.eval()


def build_instructblip(seed: int = 0):
    """An untrained tiny ``InstructBlipForConditionalGeneration`` + ``InstructBlipProcessor``."""
    from transformers import InstructBlipConfig, InstructBlipForConditionalGeneration, InstructBlipProcessor

    # no ``image_token`` attribute: InstructBlipProcessor then registers "<image>" (already in the vocabulary)
    tokenizer = build_tokenizer(extra_special_tokens={})
    qformer_tokenizer = build_tokenizer(extra_special_tokens={})
    vision, qformer, text = _parts(tokenizer)
    qformer["vocab_size"] = len(qformer_tokenizer)
    qformer["pad_token_id"] = qformer_tokenizer.pad_token_id
    config = InstructBlipConfig(vision_config=vision, qformer_config=qformer, text_config=text.to_dict(),
                                num_query_tokens=NUM_QUERY, image_token_index=tokenizer.convert_tokens_to_ids("<image>"))
    torch.manual_seed(seed)
    model = InstructBlipForConditionalGeneration(config)
    processor = InstructBlipProcessor(image_processor=_image_processor(), tokenizer=tokenizer,
                                      qformer_tokenizer=qformer_tokenizer, num_query_tokens=NUM_QUERY)
    return _finish(model, model.language_model, tokenizer, seed), processor


def build_minigpt4(seed: int = 0):
    """An untrained tiny :class:`~bench.models.families.minigpt4.MiniGPT4ForConditionalGeneration` + processor."""
    # on use: the MiniGPT-4 modules import transformers' BLIP-2 code, which `make-tiny --family llava-1.5` never needs
    from bench.models.families.minigpt4 import MiniGPT4Processor
    from bench.models.minigpt4_model import MiniGPT4Config, MiniGPT4ForConditionalGeneration

    tokenizer = build_tokenizer()
    vision, qformer, text = _parts(tokenizer)
    qformer["use_qformer_text_input"] = False
    config = MiniGPT4Config(vision_config=vision, qformer_config=qformer, text_config=text.to_dict(),
                            num_query_tokens=NUM_QUERY, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                            tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = MiniGPT4ForConditionalGeneration(config)
    return _finish(model, model.language_model, tokenizer, seed), MiniGPT4Processor(tokenizer, _image_processor())
