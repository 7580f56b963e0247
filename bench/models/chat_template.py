"""A preprocessor for families whose prompt is the checkpoint's own chat template (LLaVA-NeXT, Qwen2-VL).

Prompt: the processor's ``apply_chat_template`` on one user turn ``[image, question]`` with the generation
prompt, tokenised as the processor tokenises it (special tokens added), with the single image placeholder
token expanded to the number of tokens *this* image needs. Response: the text the template puts after the
generation prompt for an assistant turn, split into the answer (with the template's lead-in, e.g. a space)
and the closing tokens (``</s>``, ``<|im_end|>\\n`` …); both are supervised, everything before is masked
(-100) — the label layout of LLaVA-NeXT's and Qwen2-VL's SFT/DPO code, where the prompt is masked and the
assistant turn including its end token is learned. Prompt and response are tokenised separately (as
LLaVA's ``preprocess_*`` and TRL's DPO do), so a BPE merge across the boundary never happens.

Deviation: the family decides the image token count from the processor (LLaVA-NeXT's
``_get_num_multimodal_tokens``, Qwen2-VL's grid); a count that disagrees with the vision tower's output
is caught in :mod:`bench.train.forward` instead of being silently misaligned.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from PIL import Image

from bench.errors import BenchError
from bench.models.llava import IGNORE_INDEX

_SENTINEL = "\x1fBENCH_ANSWER\x1f"


@dataclass
class ChatTemplatePreprocessor(ABC):
    """Tokenizer + processor of one checkpoint whose prompt format is its chat template. Subclasses define
    ``image_input``, ``collate`` and ``image_token_count`` (image size in PIL order ``(width, height)``)."""

    processor: Any
    image_token_id: int
    image_token: str
    system: str | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def image_processor(self) -> Any:
        return self.processor.image_processor

    # ---- text
    def _messages(self, question: str, answer: str | None) -> list[dict]:
        question = question.replace(self.image_token, "").replace("<image>", "").lstrip("\n")
        msgs: list[dict] = []
        if self.system is not None:
            msgs.append({"role": "system", "content": [{"type": "text", "text": self.system}]})
        msgs.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]})
        if answer is not None:
            msgs.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return msgs

    def render(self, question: str, answer: str | None = None) -> str:
        """The chat template's text: the generation prompt (``answer`` None) or the whole conversation."""
        if getattr(self.processor, "chat_template", None) is None:
            raise BenchError("the checkpoint's processor has no chat_template; this family needs one (add"
                             " chat_template.jinja to the checkpoint folder)")
        return self.processor.apply_chat_template(self._messages(question, answer), tokenize=False,
                                                  add_generation_prompt=answer is None)

    def _turn_parts(self) -> tuple[str, str]:
        """(lead-in before the answer, closing text after it) of the assistant turn, from the template."""
        if "turn" not in self._cache:
            prompt = self.render("q")
            full = self.render("q", _SENTINEL)
            if not full.startswith(prompt) or _SENTINEL not in full[len(prompt):]:
                raise BenchError("the chat template's assistant turn does not continue its generation prompt;"
                                 " cannot build label masks from it")
            lead, close = full[len(prompt):].split(_SENTINEL)
            self._cache["turn"] = (lead, close)
        return self._cache["turn"]

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompt_ids(self, question: str, image_size: tuple[int, int] | None = None) -> list[int]:
        """The generation prompt's ids with the image placeholder expanded for an image of ``image_size``."""
        if image_size is None:
            raise BenchError(f"{type(self).__name__}: the image size is needed to count image tokens")
        text = self.render(question)
        if text.count(self.image_token) != 1:
            raise BenchError(f"chat template rendered {text.count(self.image_token)} image placeholders (want 1)")
        ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        k = ids.index(self.image_token_id)
        return ids[:k] + [self.image_token_id] * self.image_token_count(image_size) + ids[k + 1:]

    @property
    def end_ids(self) -> list[int]:
        """Tokens closing the assistant turn (supervised; ends with EOS)."""
        ids = self._encode(self._turn_parts()[1])
        eos = self.tokenizer.eos_token_id
        return ids[: ids.index(eos) + 1] if eos in ids else ids + [eos]  # up to the end of turn (what is generated)

    def text_ids(self, text: str) -> list[int]:
        """Answer tokens as the template lays them out after the generation prompt (no closing tokens)."""
        return self._encode(self._turn_parts()[0] + text.strip())

    def response_ids(self, response: str) -> list[int]:
        return self.text_ids(response) + self.end_ids

    def encode_pair(self, question: str, response: str, max_length: int, *, where: str = "",
                    image_size: tuple[int, int] | None = None) -> dict:
        p = self.prompt_ids(question, image_size)
        r = self.response_ids(response)
        if len(p) + len(r) > max_length:
            n_img = p.count(self.image_token_id)
            raise BenchError(
                f"{where or 'sample'}: sequence of {len(p) + len(r)} tokens (of which {n_img} image tokens)"
                f" exceeds max_length {max_length}; raise max_length or shorten the response — refusing to"
                " truncate (truncation silently drops response or image tokens)")
        return {"input_ids": p + r, "labels": [IGNORE_INDEX] * len(p) + r, "prompt_len": len(p)}

    # ---- images
    @abstractmethod
    def image_input(self, image: Image.Image):
        """One image's vision input."""

    @abstractmethod
    def collate(self, inputs: Sequence[Any]) -> tuple[torch.Tensor, dict]:
        """Batch of vision inputs → (pixel values, extra tensors)."""

    @abstractmethod
    def image_token_count(self, image_size: tuple[int, int]) -> int:
        """How many image tokens the prompt holds for an image of this size."""

    def images(self, images: Sequence[Image.Image]) -> tuple[torch.Tensor, dict]:
        return self.collate([self.image_input(im) for im in images])

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.images(images)[0]
