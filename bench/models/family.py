"""Model families: what differs between LLaVA-1.5, LLaVA-NeXT, Qwen2-VL … behind one small interface.

The training loop (:mod:`bench.train.forward`, :mod:`bench.train.loop`), the reference cache and the eval
engine (:mod:`bench.eval.engine`, prefix sharing included) talk to a checkpoint only through

* a **preprocessor** (``family.make_preprocessor(processor, config)``), bound to one checkpoint's tokenizer
  and image processor: the prompt template with the image placeholder expanded to the number of image
  tokens *this* image needs (``prompt_ids(question, image_size)``), the response tokens and the closing
  tokens of the assistant turn (``response_ids``), label masks on the expanded sequence (``encode_pair``),
  and the image preprocessing (``image_input(image)`` → one image's pixel tensor plus its per-image extra
  inputs such as ``image_sizes`` or ``image_grid_thw``; ``collate`` → the forward inputs of N distinct
  images);
* the **family** object (registered in :data:`FAMILIES`, chosen from ``config.json``'s ``model_type``):
  where the vision tower, the projector and the language model live, the vision tower run once per
  distinct image (``image_features`` → one ``[tokens, hidden]`` tensor per image), and the extra inputs of
  the language model (``language_model_inputs``: Qwen2-VL's 3-D rotary positions from the model's own
  ``get_rope_index``).

Families in this package: ``llava-1.5`` (model_type ``llava``), ``llava-next`` (``llava_next``), ``qwen2-vl``
(``qwen2_vl``), ``instructblip`` (``instructblip``) and ``minigpt4`` (``minigpt4``, assembled from transformers
parts). Families whose language model is not ``model.language_model`` / ``lm_head`` override
``language_model``, ``input_embeddings`` and ``lm_head``; a preprocessor whose image input depends on the
instruction (InstructBLIP's Q-Former) sets ``instruction_aware`` and is called through :func:`prompt_image_input` /
:func:`prompt_images` with the question. Another
family is one module defining a :class:`ModelFamily` subclass and registering it (entry-point group
``bench.model_families`` for third-party packages).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from dataclasses import dataclass, field
from typing import Any

import torch

from bench.errors import BenchError
from bench.registry import Registry

FAMILIES: Registry = Registry("model family", "bench.model_families")


@dataclass
class ImageInput:
    """One preprocessed image: ``pixels`` as the family's vision tower takes it for this image, and the
    per-image extra forward inputs (``{"image_sizes": tensor([h, w])}`` for LLaVA-NeXT)."""

    pixels: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside a PeftModel (or the model itself)."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


class ModelFamily(ABC):
    """Base class of a model family. Subclasses set ``name``, ``model_types``, ``hf_class`` and override what
    differs; the defaults below are LLaVA's layout (``model.vision_tower``, ``model.multi_modal_projector``,
    ``model.language_model``, ``lm_head``)."""

    name: str = ""
    model_types: tuple[str, ...] = ()
    hf_class: str = ""
    description: str = ""
    projector_attr = "multi_modal_projector"
    vision_attr = "vision_tower"
    # whether the engine's packed / batched paths (:mod:`bench.eval.fastpath`) may build the prompt embeddings
    # from ``image_features`` (which must not depend on the question) and ``language_model``; False: ``generate``
    fast_paths: bool = True
    # whether ``model.generate`` continues from a KV cache the engine prefilled, given the whole prompt as
    # ``input_ids`` (it then runs only the uncached tail; no images needed): the engine's beam search
    # (:mod:`bench.eval.beams`) prefills once per item instead of once per beam. False: ``generate`` from scratch
    generate_continues_cache: bool = True

    # ---- loading
    def model_class(self) -> Any:
        import transformers

        return getattr(transformers, self.hf_class)

    def load_processor(self, folder: Any, **kwargs: Any) -> Any:
        """The checkpoint's processor (``AutoProcessor``)."""
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(folder, **kwargs)

    @abstractmethod
    def make_preprocessor(self, processor: Any, config: Any) -> Any:
        """The preprocessor (prompt ids, image inputs, pair encoding) of a checkpoint's processor and config."""

    # ---- modules
    def vision_tower(self, model: torch.nn.Module) -> torch.nn.Module:
        return getattr(unwrap(model).model, self.vision_attr)

    def projector(self, model: torch.nn.Module) -> torch.nn.Module:
        return getattr(unwrap(model).model, self.projector_attr)

    def set_projector(self, model: torch.nn.Module, module: torch.nn.Module) -> None:
        setattr(unwrap(model).model, self.projector_attr, module)

    @property
    def projector_prefix(self) -> str:
        """State-dict prefix of the projector's weights in the unwrapped model."""
        return f"model.{self.projector_attr}."

    def language_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The decoder stack (no ``lm_head``) that takes ``inputs_embeds``."""
        return unwrap(model).model.language_model

    @property
    def language_model_prefix(self) -> str:
        """State-dict prefix of the decoder's weights (what ``full_finetune`` saves)."""
        return "model.language_model."

    def input_embeddings(self, model: torch.nn.Module) -> torch.nn.Module:
        """The language model's token-embedding table (image placeholders are replaced after it)."""
        return unwrap(model).model.get_input_embeddings()

    def lm_head(self, model: torch.nn.Module) -> torch.nn.Module:
        """The output projection applied to the decoder's last hidden states."""
        return unwrap(model).lm_head

    def vision_lora_pattern(self, config: Any, clip_linears: list[str], projector_linears: list[str]) -> str:
        """Regex alternatives adding LoRA to the vision layers that feed the projector, and to the projector."""
        raise BenchError(f"lora_vision is not supported for the {self.name} family")

    # ---- forward
    @abstractmethod
    def image_features(self, model: torch.nn.Module, pixel_values: torch.Tensor,
                       extra: dict[str, torch.Tensor]) -> list[torch.Tensor] | torch.Tensor:
        """Vision tower + projector on N distinct images: a tensor [N, T, D] (same T for every image) or a
        list of N tensors [T_i, D]."""

    def language_model_inputs(self, model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                              extra: dict[str, torch.Tensor], image_index: torch.Tensor) -> dict[str, Any]:
        """Extra keyword inputs of the language model for a right-padded batch (position ids when the family's
        are not the default 0..L-1)."""
        return {}

    def generate_inputs(self, model: torch.nn.Module, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Extra inputs of a full-model call (``generate`` / forward with ``pixel_values``) besides the images."""
        return {}

    def own_greedy(self) -> bool:
        """Whether the engine's greedy loop (1-D position ids from the attention mask) is valid for this family;
        otherwise greedy batches are decoded with ``generate``."""
        return True

    def prefix_sharing(self) -> bool:
        """Whether the eval engine may run the image + common prompt prefix once and let every question attend
        to it (:mod:`bench.eval.packed`; positions of the continuation must be plain offsets)."""
        return True


def prompt_image_input(pre: Any, image: Any, question: str) -> ImageInput:
    """One image's forward inputs for ``question``. A preprocessor whose vision input depends on the
    instruction (``instruction_aware = True``: InstructBLIP's Q-Former reads the question) gets the question;
    every other one is called as ``image_input(image)``, so its inputs do not depend on the question."""
    if getattr(pre, "instruction_aware", False):
        return pre.image_input(image, question)
    return pre.image_input(image)


def prompt_images(pre: Any, images: list, questions: list[str]) -> tuple[torch.Tensor, dict]:
    """Forward inputs of N (image, question) rows: ``pre.images(images)``, or with the questions for an
    instruction-aware preprocessor (see :func:`prompt_image_input`)."""
    if getattr(pre, "instruction_aware", False):
        return pre.images(images, questions)
    return pre.images(images)


def family_for_type(model_type: str) -> ModelFamily:
    """The family registered for ``config.json``'s ``model_type``; one clear error listing the supported ones.
    (The built-in families are registered by the ``bench.models`` package, whose ``__init__`` runs before this
    module can be imported.)"""
    for name in FAMILIES.names():
        fam = FAMILIES.get(name)
        if model_type in fam.model_types:
            return fam
    supported = ", ".join(f"{t} ({FAMILIES.get(n).name})" for n in FAMILIES.names() for t in FAMILIES.get(n).model_types)
    raise BenchError(f"unsupported model_type {model_type!r}: bench supports {supported}")


def family_of(model: torch.nn.Module) -> ModelFamily:
    """The family of a loaded (possibly peft-wrapped) model, from its config's ``model_type``."""
    return family_for_type(unwrap(model).config.model_type)
