"""LLaVA-1.5 in transformers (llava-hf), prepared the way the seed repositories prepare it.

The four seed methods all run the original LLaVA code. Two things it does that llava-hf's
processor does not do by default are reproduced here (``shared/research/methods.md`` §0):

1. The ``vicuna_v1`` conversation template with its system sentence::

       {system} USER: <image>\\n{question} ASSISTANT: {answer}</s>

   Labels cover the answer tokens and the closing ``</s>``; everything up to and including
   ``ASSISTANT:`` is masked (-100) — ``llava/train/train.py: preprocess_v1``.
2. ``image_aspect_ratio="pad"``: the image is padded to a centred square filled with
   ``int(255 * image_mean)`` of the CLIP processor before the processor resizes it
   (``expand2square``).

The ``<image>`` placeholder is expanded here, at tokenisation time, into exactly
``num_image_tokens`` image-token ids, so that label masks are built on the expanded sequence
and any truncation that would cut image tokens is detected (we raise instead of truncating).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from bench.errors import DataError, BenchError
from bench.models.family import ImageInput

VICUNA_V1_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
IMAGE_PLACEHOLDER = "<image>"
IGNORE_INDEX = -100


def build_prompt(question: str, system: str = VICUNA_V1_SYSTEM) -> str:
    """The vicuna_v1 prompt up to and including ``ASSISTANT:`` (the generation prompt).

    ``question`` must not contain ``<image>``; the placeholder is put first, followed by a
    newline, as LLaVA's ``DEFAULT_IMAGE_TOKEN + '\\n' + question`` does.
    """
    question = question.replace(IMAGE_PLACEHOLDER, "").lstrip("\n")
    return f"{system} USER: {IMAGE_PLACEHOLDER}\n{question} ASSISTANT:"


def pad_to_square(image: Image.Image, background: Sequence[float]) -> Image.Image:
    """Centre ``image`` on a square canvas of colour ``background`` (0–255 ints), as ``expand2square``."""
    width, height = image.size
    fill = tuple(int(c) for c in background)
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def load_image(path: str | Path, *, item: str | None = None) -> Image.Image:
    """Open an image as RGB; a missing or unreadable file raises :class:`DataError` naming it."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, f"image file not found{f' (item {item})' if item else ''}")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except Exception as exc:  # PIL raises many types
        raise DataError(path, f"unreadable image ({exc}){f' (item {item})' if item else ''}") from None


@dataclass
class LlavaPreprocessor:
    """Tokenizer + image processor + the two LLaVA-1.5 conventions above."""

    tokenizer: Any
    image_processor: Any
    image_token_id: int
    num_image_tokens: int
    pad_square: bool = True
    system: str = VICUNA_V1_SYSTEM

    @property
    def background(self) -> tuple[int, int, int]:
        mean = getattr(self.image_processor, "image_mean", [0.5, 0.5, 0.5])
        return tuple(int(255 * m) for m in mean)  # type: ignore[return-value]

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        if self.pad_square:
            images = [pad_to_square(im, self.background) for im in images]
        out = self.image_processor(images=list(images), return_tensors="pt")
        return out["pixel_values"]

    # ---- the family preprocessor interface (bench.models.family)
    def image_input(self, image: Image.Image) -> ImageInput:
        """One image: its pixel tensor [3, H, W] (padded to square, CLIP-processed); no extra inputs."""
        return ImageInput(self.pixel_values([image])[0])

    def collate(self, inputs: Sequence[ImageInput]) -> tuple[torch.Tensor, dict]:
        """pixel_values [N, 3, H, W] of N distinct images; LLaVA-1.5 needs no other input."""
        return torch.stack([i.pixels for i in inputs]), {}

    def images(self, images: Sequence[Image.Image]) -> tuple[torch.Tensor, dict]:
        """Forward inputs of ``images`` (pixel_values and the family's extra inputs)."""
        return self.pixel_values(images), {}

    def image_token_count(self, image_size: tuple[int, int] | None = None) -> int:
        """Image tokens of one image (the same for every size: the image is padded and resized)."""
        return self.num_image_tokens

    @property
    def end_ids(self) -> list[int]:
        """Tokens closing the assistant turn (supervised): ``</s>``."""
        return [self.tokenizer.eos_token_id]

    def text_ids(self, text: str) -> list[int]:
        """Tokens of ``text`` as it follows the previous answer text (no leading space, no closing tokens)."""
        return self._encode(" " + text.strip())

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompt_ids(self, question: str, image_size: tuple[int, int] | None = None) -> list[int]:
        """BOS + system + ``USER: `` + image tokens + ``\\n{question} ASSISTANT:``."""
        prompt = build_prompt(question, self.system)
        before, after = prompt.split(IMAGE_PLACEHOLDER)
        bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        return bos + self._encode(before.rstrip(" ") + " ") + [self.image_token_id] * self.num_image_tokens + self._encode(after)

    def response_ids(self, response: str) -> list[int]:
        """Tokens of `` {response}</s>`` as they follow ``ASSISTANT:`` in the vicuna_v1 layout."""
        ids = self._encode(" " + response.strip())
        return ids + [self.tokenizer.eos_token_id]

    def encode_pair(self, question: str, response: str, max_length: int, *, where: str = "",
                    image_size: tuple[int, int] | None = None) -> dict:
        """input_ids and labels of prompt+response; labels mask the prompt (and image tokens)."""
        p = self.prompt_ids(question, image_size)
        r = self.response_ids(response)
        ids = p + r
        if len(ids) > max_length:
            raise BenchError(
                f"{where or 'sample'}: sequence of {len(ids)} tokens (of which {self.num_image_tokens} image tokens)"
                f" exceeds max_length {max_length}; raise max_length or shorten the response — refusing to"
                " truncate (truncation silently drops response or image tokens)"
            )
        return {"input_ids": ids, "labels": [IGNORE_INDEX] * len(p) + r, "prompt_len": len(p)}


def num_image_tokens_from_config(config: Any) -> int:
    """Image tokens per image for llava-hf configs (patch tokens; CLS dropped with ``default``)."""
    vc = config.vision_config
    n = (vc.image_size // vc.patch_size) ** 2
    if getattr(config, "vision_feature_select_strategy", "default") == "full":
        n += 1
    return n


def make_preprocessor(processor: Any, config: Any, pad_square: bool = True) -> LlavaPreprocessor:
    tok = processor.tokenizer
    image_token_id = getattr(config, "image_token_id", None)
    if image_token_id is None:
        image_token_id = getattr(config, "image_token_index")
    return LlavaPreprocessor(
        tokenizer=tok,
        image_processor=processor.image_processor,
        image_token_id=int(image_token_id),
        num_image_tokens=num_image_tokens_from_config(config),
        pad_square=pad_square,
    )
