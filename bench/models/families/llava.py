"""LLaVA-1.5 (llava-hf ``LlavaForConditionalGeneration``, model_type ``llava``).

Prompt: vicuna_v1 with its system sentence; images padded to a square of the CLIP mean colour; every image
expands to ``(image_size / patch_size)²`` tokens (see :mod:`bench.models.llava`, which holds the
preprocessor). The vision tower's hidden state at ``vision_feature_layer`` (CLS dropped with the ``default``
strategy) goes through the projector: ``LlavaModel.get_image_features`` (transformers 5).
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Any, Iterator

import torch

from bench.models.family import FAMILIES, ModelFamily, unwrap
from bench.models.llava import make_preprocessor


def vision_layers_used(config: Any) -> int:
    """How many vision encoder layers feed the projector (``vision_feature_layer`` −2 of 24 → 23)."""
    n = config.vision_config.num_hidden_layers
    layers = config.vision_feature_layer
    layers = layers if isinstance(layers, (list, tuple)) else [layers]
    return max(n + 1 + f if f < 0 else f for f in layers)


def _pass_through(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return hidden_states


@contextmanager
def only_used_vision_layers(llava: torch.nn.Module) -> Iterator[None]:
    """Within the block, the vision encoder's layers after the one the projector reads return their input
    unchanged instead of computing.

    LLaVA reads the penultimate layer (``vision_feature_layer`` −2): transformers' ``get_image_features`` runs
    every layer and discards the last one's output (1 of 24 CLIP-L layers, 1 of 4 at the ``mid`` perf shape).
    The layers that are read run exactly as before, so the features are bit-identical. The skipped layers are
    still *called* (their ``forward`` is shadowed on the instance, then restored), so transformers' hidden-state
    bookkeeping — its output-capturing hooks, which it installs once per model, and the count behind negative
    ``vision_feature_layer`` indices — sees the encoder it expects. Applies only to encoders with an
    ``encoder.layers`` list whose layers return a tensor (CLIP and SigLIP in transformers 5); others run
    whole."""
    tower = llava.model.vision_tower
    encoder = getattr(getattr(tower, "vision_model", tower), "encoder", None)  # transformers 4.x nests it
    layers = getattr(encoder, "layers", None)
    used = vision_layers_used(llava.config)
    if (not isinstance(layers, torch.nn.ModuleList) or not 1 <= used < len(layers)
            or not all(_returns_tensor(layer) for layer in layers[used:])):
        yield
        return
    skipped = list(layers)[used:]
    for layer in skipped:
        layer.forward = _pass_through
    try:
        yield
    finally:
        for layer in skipped:
            del layer.forward


def _returns_tensor(layer: torch.nn.Module) -> bool:
    annotation = inspect.signature(type(layer).forward).return_annotation
    return annotation is torch.Tensor or annotation in ("torch.Tensor", "Tensor")


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
        with only_used_vision_layers(llava):
            out = llava.model.get_image_features(
                pixel_values=pixel_values,
                vision_feature_layer=llava.config.vision_feature_layer,
                vision_feature_select_strategy=llava.config.vision_feature_select_strategy,
            )
        feats = out.pooler_output if hasattr(out, "pooler_output") else out
        return torch.stack(list(feats)) if isinstance(feats, (list, tuple)) else feats


FAMILIES.add("llava-1.5", LlavaFamily())
