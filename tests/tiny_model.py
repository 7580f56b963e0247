"""A throwaway tiny LLaVA built from configs for unit tests (no hub, no shipped weights)."""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = ("a chat between curious user and an artificial intelligence assistant . the gives helpful , detailed polite"
         " answers to user's questions USER : ASSISTANT describe this image in detail is there dog cat car yes no"
         " of with on").split()


def build(out: Path, seed: int = 0, image_size: int = 32, patch: int = 8) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<image>": 3}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<unk>", extra_special_tokens={"image_token": "<image>"})
    ip = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                       image_size=image_size, patch_size=patch),
        text_config=LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512),
        image_token_id=3, vision_feature_layer=-2, vision_feature_select_strategy="default")
    torch.manual_seed(seed)
    LlavaForConditionalGeneration(cfg).save_pretrained(out)
    LlavaProcessor(image_processor=ip, tokenizer=fast, patch_size=patch,
                   vision_feature_select_strategy="default").save_pretrained(out)
    return out
