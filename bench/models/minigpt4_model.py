"""The MiniGPT-4 model classes (config + ``MiniGPT4ForConditionalGeneration``), built from transformers' BLIP-2
parts; the wiring, prompt and every deviation are documented in :mod:`bench.models.families.minigpt4`. A module of
its own so that importing the model families does not import transformers' BLIP-2 code."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, Blip2Config
from transformers.models.blip_2.modeling_blip_2 import Blip2PreTrainedModel, Blip2QFormerModel, Blip2VisionModel

from bench.errors import BenchError


class MiniGPT4Config(Blip2Config):
    """BLIP-2's composite config (``vision_config``, ``qformer_config``, ``text_config``, ``num_query_tokens``,
    ``image_token_id``) under its own model type."""

    model_type = "minigpt4"


def _register_config() -> None:
    """Make ``AutoConfig`` (which ``AutoTokenizer`` consults) know the model type ``minigpt4``."""
    from transformers import AutoConfig

    try:
        AutoConfig.register("minigpt4", MiniGPT4Config)
    except ValueError:  # already registered (module re-imported)
        pass


_register_config()


class MiniGPT4ForConditionalGeneration(Blip2PreTrainedModel):
    """ViT-g + ``ln_vision`` (``vision_model``), 32 ``query_tokens`` + text-less Q-Former (``qformer``),
    ``llama_proj``, Llama-2 (``language_model``). The image's 32 projected query outputs replace the 32
    ``image_token_id`` placeholders of ``input_ids``."""

    config: MiniGPT4Config
    config_class = MiniGPT4Config
    main_input_name = "input_ids"
    base_model_prefix = "minigpt4"

    def __init__(self, config: MiniGPT4Config):
        super().__init__(config)
        self.vision_model = Blip2VisionModel._from_config(config.vision_config)
        self.query_tokens = nn.Parameter(torch.zeros(1, config.num_query_tokens, config.qformer_config.hidden_size))
        self.qformer = Blip2QFormerModel._from_config(config.qformer_config)
        self.llama_proj = nn.Linear(config.qformer_config.hidden_size, config.text_config.hidden_size)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``llama_proj(Qformer(query_tokens, ln_vision(ViT(x))))``: [N, 32, LLM width]."""
        image_embeds = self.vision_model(pixel_values=pixel_values).last_hidden_state
        mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        queries = self.query_tokens.expand(image_embeds.shape[0], -1, -1)
        out = self.qformer(query_embeds=queries, encoder_hidden_states=image_embeds, encoder_attention_mask=mask)
        return self.llama_proj(out.last_hidden_state)

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with the image placeholders replaced by the image features (in row order)."""
        is_image = input_ids == self.config.image_token_id
        embeds = self.get_input_embeddings()(input_ids.masked_fill(is_image, 0))
        if bool(is_image.any()):
            if pixel_values is None:
                raise BenchError("MiniGPT-4: image placeholders in input_ids but no pixel_values")
            feats = self.get_image_features(pixel_values.to(self.query_tokens.dtype))
            if int(is_image.sum()) != feats.shape[0] * feats.shape[1]:
                raise BenchError(f"MiniGPT-4: {int(is_image.sum())} image placeholders for {feats.shape[0]} images of"
                                 f" {feats.shape[1]} tokens")
            embeds = embeds.masked_scatter(is_image.unsqueeze(-1), feats.to(embeds.dtype))
        return embeds

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, cache: Any = None, pixel_values: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                use_cache: bool | None = None, logits_to_keep: int = 0, **kwargs: Any):
        if inputs_embeds is None:
            inputs_embeds = self.embed(input_ids, pixel_values)
        return self.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                   position_ids=position_ids, cache=cache, labels=labels, use_cache=use_cache,
                                   logits_to_keep=logits_to_keep, **kwargs)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        """The LLM's ``generate`` on the embedded prompt; returns ``input_ids`` followed by the new tokens."""
        embeds = self.embed(input_ids, pixel_values)
        return self.language_model.generate(input_ids=input_ids, inputs_embeds=embeds,
                                            attention_mask=attention_mask, **kwargs)
