"""Qwen2-VL (``Qwen2VLForConditionalGeneration``, model_type ``qwen2_vl``) and Qwen2.5-VL (``qwen2_5_vl``).

Prompt: the checkpoint's chat template (chatml: ``<|im_start|>system … <|im_end|>``, the image as
``<|vision_start|><|image_pad|><|vision_end|>``), see :mod:`bench.models.chat_template`; the assistant turn's
answer and its ``<|im_end|>`` are supervised. Image: dynamic resolution — the image processor resizes the image
to multiples of ``patch_size × merge_size`` within ``[min_pixels, max_pixels]`` and returns flattened patches
(``pixel_values`` [patches, C·T·P·P]) with ``image_grid_thw`` (t, h, w); the image takes
``t·h·w / merge_size²`` tokens. Positions: 3-D rotary (temporal, height, width) from the model's own
``get_rope_index`` on the right-padded batch (image tokens marked by ``mm_token_type_ids``) — the positions after
an image are not plain offsets, so the eval engine decodes with ``generate`` and does not share prefixes.
Reference: transformers 5.24 ``models/qwen2_vl`` (modeling + processing). The projector is the vision tower's
``merger`` (``model.visual.merger``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from PIL import Image

from bench.models.chat_template import ChatTemplatePreprocessor
from bench.models.family import FAMILIES, ImageInput, ModelFamily, unwrap


class ProcessorParts:
    """Tokenizer + image processor + chat template of a Qwen2-VL folder, without ``Qwen2VLProcessor`` (whose
    video processor needs torchvision, which evaluating and training on images do not): what the preprocessor
    uses of a processor — ``tokenizer``, ``image_processor``, ``chat_template``, ``apply_chat_template``."""

    def __init__(self, tokenizer: Any, image_processor: Any, chat_template: str | None):
        self.tokenizer, self.image_processor, self.chat_template = tokenizer, image_processor, chat_template
        self.image_token = "<|image_pad|>"

    def apply_chat_template(self, messages: list[dict], **kwargs: Any) -> str:
        return self.tokenizer.apply_chat_template(messages, chat_template=self.chat_template, **kwargs)

    def save_pretrained(self, out: Any) -> None:
        from pathlib import Path

        self.tokenizer.save_pretrained(out)
        self.image_processor.save_pretrained(out)
        if self.chat_template:
            (Path(out) / "chat_template.jinja").write_text(self.chat_template)


def load_processor_parts(folder: Any, **kwargs: Any) -> Any:
    """``AutoProcessor`` when it loads; otherwise (no torchvision) the tokenizer, image processor and template."""
    from pathlib import Path

    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    try:
        return AutoProcessor.from_pretrained(folder, **kwargs)
    except (ImportError, AttributeError, ValueError, OSError):
        tok = AutoTokenizer.from_pretrained(folder, **kwargs)
        image_processor = AutoImageProcessor.from_pretrained(folder, **kwargs)
        template = Path(folder) / "chat_template.jinja"
        return ProcessorParts(tok, image_processor, template.read_text() if template.exists() else tok.chat_template)


@dataclass
class Qwen2VLPreprocessor(ChatTemplatePreprocessor):
    def image_input(self, image: Image.Image) -> ImageInput:
        out = self.image_processor(images=[image], return_tensors="pt")
        return ImageInput(out["pixel_values"], {"image_grid_thw": out["image_grid_thw"][0]})

    def collate(self, inputs: Sequence[ImageInput]) -> tuple[torch.Tensor, dict]:
        """pixel_values: every image's patches concatenated; image_grid_thw [N, 3]."""
        return torch.cat([i.pixels for i in inputs]), {"image_grid_thw": torch.stack([i.extra["image_grid_thw"]
                                                                                       for i in inputs])}

    def image_token_count(self, image_size: tuple[int, int]) -> int:
        """``t·h·w / merge²`` of the grid the image processor gives an image of this size."""
        key = ("count", *image_size)
        if key not in self._cache:
            grid = self.image_input(Image.new("RGB", image_size)).extra["image_grid_thw"]
            self._cache[key] = int(grid.prod()) // int(self.image_processor.merge_size) ** 2
        return self._cache[key]


class Qwen2VLFamily(ModelFamily):
    name = "qwen2-vl"
    model_types = ("qwen2_vl",)
    hf_class = "Qwen2VLForConditionalGeneration"
    description = "Qwen2-VL: chatml template, dynamic resolution (image_grid_thw), 3-D rotary positions"
    vision_attr = "visual"

    def load_processor(self, folder: Any, **kwargs: Any) -> Any:
        return load_processor_parts(folder, **kwargs)

    def make_preprocessor(self, processor: Any, config: Any, pad_square: bool = True) -> Qwen2VLPreprocessor:
        token = getattr(processor, "image_token", None) or "<|image_pad|>"
        return Qwen2VLPreprocessor(processor=processor, image_token_id=int(config.image_token_id), image_token=token)

    def projector(self, model: torch.nn.Module) -> torch.nn.Module:
        return unwrap(model).model.visual.merger

    def set_projector(self, model: torch.nn.Module, module: torch.nn.Module) -> None:
        unwrap(model).model.visual.merger = module

    @property
    def projector_prefix(self) -> str:
        return "model.visual.merger."

    def image_features(self, model: torch.nn.Module, pixel_values: torch.Tensor,
                       extra: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        out = unwrap(model).model.get_image_features(pixel_values=pixel_values, image_grid_thw=extra["image_grid_thw"])
        feats = out.pooler_output if hasattr(out, "pooler_output") else out
        return list(feats)

    def mm_token_type_ids(self, model: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        return (input_ids == unwrap(model).config.image_token_id).int()

    def language_model_inputs(self, model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                              extra: dict[str, torch.Tensor], image_index: torch.Tensor) -> dict[str, Any]:
        grids = extra["image_grid_thw"][image_index.to(extra["image_grid_thw"].device)]  # one image per sequence
        pos, _ = unwrap(model).model.get_rope_index(input_ids, mm_token_type_ids=self.mm_token_type_ids(model, input_ids),
                                                    image_grid_thw=grids, attention_mask=attention_mask)
        return {"position_ids": pos}

    def generate_inputs(self, model: torch.nn.Module, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"mm_token_type_ids": self.mm_token_type_ids(model, input_ids)}

    def prefix_sharing(self) -> bool:
        return False

    def own_greedy(self) -> bool:
        return False


class Qwen25VLFamily(Qwen2VLFamily):
    """Qwen2.5-VL: the same template, image inputs and M-RoPE interface (``get_rope_index``); its vision tower
    adds window attention and RMSNorm, which live inside transformers' ``visual`` module."""

    name = "qwen2.5-vl"
    model_types = ("qwen2_5_vl",)
    hf_class = "Qwen2_5_VLForConditionalGeneration"
    description = "Qwen2.5-VL: chatml template, dynamic resolution (image_grid_thw), 3-D rotary positions"


FAMILIES.add("qwen2-vl", Qwen2VLFamily())
FAMILIES.add("qwen2.5-vl", Qwen25VLFamily())
