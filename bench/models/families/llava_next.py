"""LLaVA-NeXT / LLaVA-1.6 (llava-hf ``LlavaNextForConditionalGeneration``, model_type ``llava_next``).

Prompt: the checkpoint's own chat template (llava-hf ships one per checkpoint: vicuna_v1 for
``llava-v1.6-vicuna-*``, ``[INST] … [/INST]`` for ``llava-v1.6-mistral-7b``, chatml for 34B), see
:mod:`bench.models.chat_template`. Image: any-resolution — the image processor picks the best grid of
``image_grid_pinpoints`` for the image's size and returns the resized base view plus the grid's tiles
(``pixel_values`` [tiles, 3, H, W], ``image_sizes`` (h, w)); the vision tower runs on every tile and the
features are unpadded to the image's aspect ratio with a learned newline embedding after every row
(``LlavaNextModel.pack_image_features``), so the number of image tokens depends on the image size: it is
taken from the processor (``_get_num_multimodal_tokens``), the same count the llava-hf processor expands
``<image>`` to. Reference: transformers 5.24 ``models/llava_next`` (modeling + processing), the port of
LLaVA-NeXT's ``anyres`` / ``spatial_unpad``. No pad-to-square (NeXT's processor does not pad).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from PIL import Image

from bench.models.chat_template import ChatTemplatePreprocessor
from bench.models.family import FAMILIES, ImageInput, unwrap
from bench.models.families.llava import LlavaFamily, only_used_vision_layers


@dataclass
class LlavaNextPreprocessor(ChatTemplatePreprocessor):
    def image_input(self, image: Image.Image) -> ImageInput:
        out = self.image_processor(images=[image], return_tensors="pt")
        return ImageInput(out["pixel_values"][0], {"image_sizes": out["image_sizes"][0]})

    def collate(self, inputs: Sequence[ImageInput]) -> tuple[torch.Tensor, dict]:
        """pixel_values [N, max tiles, 3, H, W] (zero tiles after an image's own, ignored by the model) and
        image_sizes [N, 2]."""
        tiles = max(i.pixels.shape[0] for i in inputs)
        pix = torch.zeros((len(inputs), tiles, *inputs[0].pixels.shape[1:]), dtype=inputs[0].pixels.dtype)
        for k, i in enumerate(inputs):
            pix[k, : i.pixels.shape[0]] = i.pixels
        return pix, {"image_sizes": torch.stack([i.extra["image_sizes"] for i in inputs])}

    def image_token_count(self, image_size: tuple[int, int]) -> int:
        width, height = image_size
        key = ("count", width, height)
        if key not in self._cache:
            self._cache[key] = int(self.processor._get_num_multimodal_tokens(image_sizes=[[height, width]])
                                   .num_image_tokens[0])
        return self._cache[key]


class LlavaNextFamily(LlavaFamily):
    name = "llava-next"
    model_types = ("llava_next",)
    hf_class = "LlavaNextForConditionalGeneration"
    description = "LLaVA-NeXT (1.6): checkpoint chat template, any-resolution tiles, image_sizes"

    def make_preprocessor(self, processor: Any, config: Any, pad_square: bool = True) -> LlavaNextPreprocessor:
        token = getattr(processor, "image_token", None) or "<image>"
        return LlavaNextPreprocessor(processor=processor, image_token_id=int(config.image_token_id), image_token=token)

    def image_features(self, model: torch.nn.Module, pixel_values: torch.Tensor,
                       extra: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        llava = unwrap(model)
        with only_used_vision_layers(llava):
            out = llava.model.get_image_features(
                pixel_values=pixel_values, image_sizes=extra["image_sizes"],
                vision_feature_layer=llava.config.vision_feature_layer,
                vision_feature_select_strategy=llava.config.vision_feature_select_strategy,
            )
        feats = out.pooler_output if hasattr(out, "pooler_output") else out
        return list(feats)


FAMILIES.add("llava-next", LlavaNextFamily())
