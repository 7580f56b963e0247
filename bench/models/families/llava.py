"""LLaVA-1.5 (llava-hf ``LlavaForConditionalGeneration``, model_type ``llava``).

Prompt: vicuna_v1 with its system sentence; images padded to a square of the CLIP mean colour; every image
expands to ``(image_size / patch_size)²`` tokens (see :mod:`bench.models.llava`, which holds the
preprocessor). The vision tower's hidden state at ``vision_feature_layer`` (CLS dropped with the ``default``
strategy) goes through the projector: ``LlavaModel.get_image_features`` (transformers 5).
"""

from __future__ import annotations

from typing import Any

import torch

from bench.models.family import FAMILIES, ModelFamily, unwrap
from bench.models.llava import make_preprocessor


def vision_layers_used(config: Any) -> int:
    """How many vision encoder layers feed the projector (``vision_feature_layer`` −2 of 24 → 23)."""
    n = config.vision_config.num_hidden_layers
    layers = config.vision_feature_layer
    layers = layers if isinstance(layers, (list, tuple)) else [layers]
    return max(n + 1 + f if f < 0 else f for f in layers)


class LlavaFamily(ModelFamily):
    name = "llava-1.5"
    model_types = ("llava",)
    hf_class = "LlavaForConditionalGeneration"
    description = "LLaVA-1.5: vicuna_v1 template, pad-to-square, fixed image tokens"

    def make_preprocessor(self, processor: Any, config: Any, pad_square: bool = True):
        return make_preprocessor(processor, config, pad_square=pad_square)

    def vision_lora_pattern(self, config: Any, clip_linears: list[str], projector_linears: list[str]) -> str:
        used = "|".join(str(i) for i in range(vision_layers_used(config)))
        return (rf".*vision_tower.*\.layers\.({used})\..*\.({'|'.join(clip_linears)})$"
                rf"|.*multi_modal_projector\.({'|'.join(projector_linears)})$")

    def image_features(self, model: torch.nn.Module, pixel_values: torch.Tensor,
                       extra: dict[str, torch.Tensor]) -> torch.Tensor:
        llava = unwrap(model)
        cfg = llava.config
        out = llava.model.get_image_features(
            pixel_values=pixel_values,
            vision_feature_layer=cfg.vision_feature_layer,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy,
        )
        feats = out.pooler_output if hasattr(out, "pooler_output") else out
        return torch.stack(list(feats)) if isinstance(feats, (list, tuple)) else feats


FAMILIES.add("llava-1.5", LlavaFamily())
