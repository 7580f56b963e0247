"""The perf commands' models: LLaVA shapes built from configs with random weights (never downloaded), an
id tokenizer and a CLIP image processor of the shape's size. Used by :mod:`bench.perf_eval`,
:mod:`bench.perf_train` and the engine tests; the shapes are described in :mod:`bench.perf`."""

from __future__ import annotations

import torch

from bench.models.llava import LlavaPreprocessor, num_image_tokens_from_config
from bench.records import device_name  # noqa: F401  (re-exported for the perf modules)


def shape_config(shape: str, image_token_id: int | None = None):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    if shape == "llava-7b":
        vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                                  image_size=336, patch_size=14, projection_dim=768)
        text = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                           num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096)
    elif shape == "mid":  # a CPU-sized LLaVA: 256 image tokens, 8 LM layers, the LLaVA-1.5 vocabulary size
        vision = CLIPVisionConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                                  image_size=224, patch_size=14, projection_dim=512)
        text = LlamaConfig(vocab_size=32064, hidden_size=512, intermediate_size=1376, num_hidden_layers=8,
                           num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=4096)
    elif shape == "tiny":
        vision = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                                  image_size=32, patch_size=8)
        text = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024)
    else:
        raise SystemExit(f"unknown shape {shape!r} (tiny | mid | llava-7b)")
    image_token_id = text.vocab_size - 64 + 1 if image_token_id is None else image_token_id
    return LlavaConfig(vision_config=vision, text_config=text, image_token_id=image_token_id,
                       vision_feature_layer=-2, vision_feature_select_strategy="default")


class _IdTokenizer:
    """Token ids without text: perf data only needs lengths. Words map to ids by a stable hash (crc32) mod the
    vocabulary; ``decode`` writes the ids back as numbers (so texts compare exactly)."""

    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def __init__(self, vocab: int):
        self.vocab = vocab

    def __call__(self, text, add_special_tokens=False):
        import zlib

        return {"input_ids": [3 + (zlib.crc32(w.encode()) % (self.vocab - 100)) for w in text.split()]}

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        special = {self.bos_token_id, self.eos_token_id, self.pad_token_id} if skip_special_tokens else set()
        return " ".join(str(i) for i in ids if i not in special)

    def batch_decode(self, rows, skip_special_tokens: bool = True) -> list[str]:
        return [self.decode(r, skip_special_tokens) for r in rows]


def build_model(shape: str, device: str, dtype: torch.dtype | None = None):
    """A randomly initialised ``LlavaForConditionalGeneration`` of ``shape`` (seed 0; bfloat16 on CUDA, float32
    on CPU) in eval mode, and its preprocessor (id tokenizer, CLIP image processor at the shape's size)."""
    from transformers import LlavaForConditionalGeneration


    cfg = shape_config(shape)
    dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration(cfg).to(dtype).eval()
    pre = LlavaPreprocessor(_IdTokenizer(cfg.text_config.vocab_size), _fake_processor(cfg.vision_config.image_size),
                            cfg.image_token_id, num_image_tokens_from_config(cfg))
    return model, pre


def _fake_processor(size: int):
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
