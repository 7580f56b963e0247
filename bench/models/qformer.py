"""The layout shared by the Q-Former families (:mod:`bench.models.families.instructblip`,
:mod:`bench.models.families.minigpt4`): ``vision_model`` (ViT + its post-LayerNorm), ``query_tokens``, ``qformer``,
a linear projection to the LLM width (``projector_attr``) and a causal LM at ``language_model`` (decoder at
``language_model.model``, ``language_model.lm_head``) — transformers' InstructBLIP / BLIP-2 layout. Kept outside
``bench.models.families`` so that family modules never import each other through that package."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import torch
from PIL import Image

from bench.errors import BenchError
from bench.models.family import ModelFamily, unwrap
from bench.models.llava import IGNORE_INDEX


class QFormerFamily(ModelFamily):
    """Layout shared by InstructBLIP and the assembled MiniGPT-4: ``vision_model``, ``query_tokens``, ``qformer``,
    a linear projection (``projector_attr``) and a causal LM at ``language_model`` (decoder ``.model``, ``lm_head``)."""

    vision_attr = "vision_model"
    projector_attr = "language_projection"

    def vision_tower(self, model: torch.nn.Module) -> torch.nn.Module:
        return unwrap(model).vision_model

    def projector(self, model: torch.nn.Module) -> torch.nn.Module:
        return getattr(unwrap(model), self.projector_attr)

    def set_projector(self, model: torch.nn.Module, module: torch.nn.Module) -> None:
        setattr(unwrap(model), self.projector_attr, module)

    @property
    def projector_prefix(self) -> str:
        return f"{self.projector_attr}."

    def language_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return unwrap(model).language_model.model

    @property
    def language_model_prefix(self) -> str:
        return "language_model.model."

    def input_embeddings(self, model: torch.nn.Module) -> torch.nn.Module:
        return unwrap(model).language_model.get_input_embeddings()

    def lm_head(self, model: torch.nn.Module) -> torch.nn.Module:
        return unwrap(model).language_model.lm_head

    def vision_lora_pattern(self, config: Any, clip_linears: list[str], projector_linears: list[str]) -> str:
        """``lora_vision`` (OPA-DPO's LoRA on every linear layer): the ViT's attention (``qkv``, ``projection``) and
        MLP (``fc1``, ``fc2``) of every layer (all feed the Q-Former through ``post_layernorm``), the Q-Former's
        self- and cross-attention (``query``/``key``/``value``, ``output.dense``) and query FFN of every layer,
        its text FFN (InstructBLIP) in every layer but the last — only the query outputs leave the Q-Former, so
        the last layer's text FFN never gets a gradient — and the projection. (The LLaVA names ``clip_linears`` /
        ``projector_linears`` do not apply.)"""
        last = int(config.qformer_config.num_hidden_layers) - 1
        before_last = "|".join(str(i) for i in range(last)) or "-1"
        return (r".*vision_model\.encoder\.layers\.\d+\.(self_attn\.(qkv|projection)|mlp\.(fc1|fc2))$"
                r"|.*qformer\.encoder\.layer\.\d+\.(attention|crossattention)\.(attention\.(query|key|value)|output\.dense)$"
                r"|.*qformer\.encoder\.layer\.\d+\.(intermediate_query|output_query)\.dense$"
                rf"|.*qformer\.encoder\.layer\.({before_last})\.(intermediate|output)\.dense$"
                rf"|.*{self.projector_attr}$")


class QueryTokenPreprocessor(ABC):
    """Text and image helpers shared by the Q-Former preprocessors (InstructBLIP's, MiniGPT-4's): the answer is
    the tokenizer's ids of `` <text>`` then EOS; a prompt holds ``num_query_tokens`` image placeholders; pixels
    come from the checkpoint's image processor. A subclass supplies ``tokenizer``, ``image_processor``,
    ``num_query_tokens`` and ``prompt_ids``; a pair too long for ``max_length`` is refused, never truncated."""

    tokenizer: Any
    image_processor: Any
    num_query_tokens: int

    @abstractmethod
    def prompt_ids(self, question: str, image_size: tuple[int, int] | None = None) -> list[int]:
        """The prompt's token ids, ``num_query_tokens`` image placeholders included."""

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @property
    def end_ids(self) -> list[int]:
        return [self.tokenizer.eos_token_id]

    def text_ids(self, text: str) -> list[int]:
        return self._encode(" " + text.strip())

    def response_ids(self, response: str) -> list[int]:
        return self.text_ids(response) + self.end_ids

    def encode_pair(self, question: str, response: str, max_length: int, *, where: str = "",
                    image_size: tuple[int, int] | None = None) -> dict:
        p = self.prompt_ids(question, image_size)
        r = self.response_ids(response)
        if len(p) + len(r) > max_length:
            raise BenchError(
                f"{where or 'sample'}: sequence of {len(p) + len(r)} tokens (of which {self.num_query_tokens} image"
                f" tokens) exceeds max_length {max_length}; raise max_length or shorten the response — refusing to"
                " truncate (truncation silently drops response or image tokens)")
        return {"input_ids": p + r, "labels": [IGNORE_INDEX] * len(p) + r, "prompt_len": len(p)}

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.image_processor(images=list(images), return_tensors="pt")["pixel_values"]

    def image_token_count(self, image_size: tuple[int, int] | None = None) -> int:
        return self.num_query_tokens
