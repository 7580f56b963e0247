"""MiniGPT-4 (Llama-2-7B chat variant), assembled from transformers parts (model_type ``minigpt4``).

MiniGPT-4 is not in transformers. The original (Vision-CAIR/MiniGPT-4 ``minigpt4/models/mini_gpt4.py``, and
HA-DPO's copy ``ha_dpo/models/minigpt4/minigpt4/models/mini_gpt4.py`` @abdc44b) wires:

1. **Vision**: EVA ViT-g/14 (39 blocks, width 1408, 224 px → 16×16 patches + CLS = 257 tokens) followed by
   ``ln_vision`` (LayerNorm) — transformers' ``Blip2VisionModel`` is the same network (``q_bias``/``v_bias``
   attention, ``post_layernorm`` = ``ln_vision``); its ``last_hidden_state`` is ``ln_vision(visual_encoder(x))``.
2. **Q-Former**: BLIP-2's, from ``blip2_pretrained_flant5xxl.pth``, with its text branch removed (word and
   position embeddings, the text FFN and the LM head set to ``None``): only the 32 query tokens go in, with
   cross-attention on the image tokens — transformers' ``Blip2QFormerModel`` with ``use_qformer_text_input=False``
   (LayerNorm + dropout on the queries, query FFN only). All 32 outputs are kept.
3. **Projection**: ``llama_proj = nn.Linear(768, 4096)`` — the one part MiniGPT-4 trains (stage 1 + 2),
   released in ``pretrained_minigpt4_llama2_7b.pth`` (``{"model": {"llama_proj.weight", "llama_proj.bias"}}``).
4. **LLM**: ``meta-llama/Llama-2-7b-chat-hf`` (``LlamaForCausalLM``).

Prompt (what HA-DPO evaluates with: ``pope_eval.py`` / ``shr_eval.py`` build ``CONV_VISION_LLama2`` with the
image message ``<Img><ImageHere></Img>`` and the question joined by a space; ``Chat.answer`` strips the rendered
prompt)::

    Give the following image: <Img>ImageContent</Img>. You will be able to see the image once I provide it
    to you. Please answer my questions.<s>[INST] <Img><ImageHere></Img> {question} [/INST]

split at ``<ImageHere>``; the first segment is tokenised with BOS (the literal ``<s>`` inside it is the BOS
special token), the second without special tokens, and the 32 projected query outputs go between them
(``Chat.get_context_emb``). Here the 32 positions hold an image placeholder id (``config.image_token_id``) that
the model replaces with the features, so the engine, the loop and prefix sharing see an ordinary token
sequence. Response: `` {answer}</s>`` (``end_sym`` ``</s>``); labels cover the answer and ``</s>``.
Image: ``blip2_image_eval`` — resize to 224×224 (bicubic), CLIP mean/std (``BlipImageProcessor``).

Decoding HA-DPO used: greedy (``do_sample=False``, 1 beam), ``max_new_tokens`` 300, ``repetition_penalty`` 1,
``length_penalty`` 1; in ``bench`` the protocol owns decoding (recorded here, not applied). LoRA as HA-DPO trains
it: LLM ``q_proj``, ``k_proj``, ``v_proj``, r 64, alpha 16; ``llama_proj``, Q-Former and ViT frozen; lr 1e-4,
1000 steps, beta 0.1 (its auxiliary SFT loss, gamma 0.5, is not reproduced).

Prefix sharing applies: the Q-Former sees no text, so the features depend on the image only and the system
sentence + image tokens are a common prefix of every question about an image.

Released weights are read without executing code: the projection checkpoint with
``torch.load(..., weights_only=True)``, everything else from safetensors (:func:`assemble`;
``python -m bench models assemble-minigpt4``). The assembled folder (``config.json``, ``model.safetensors``,
tokenizer with the placeholder token ``<ImageHere>`` added, image processor, ``bench_assembly.json`` with the
sha256 of every source file) loads with :class:`bench.models.minigpt4_model.MiniGPT4ForConditionalGeneration`
offline (the model classes live there, imported only when a MiniGPT-4 checkpoint is used).

Deviations: (1) the original runs the ViT in fp16 (``vit_precision``) and the LLM 4-bit in HA-DPO's training
(``load_in_4bit``); we run the whole model in ``--dtype``. (2) The placeholder token ``<ImageHere>`` is added to
the Llama-2 tokenizer and the embedding matrix grows by one row (never read: features replace it); the pad token
is ``<unk>`` (HA-DPO pads with ``$$``; pads are masked either way). (3) MiniGPT-4's stopping criterion on ``###``
(a Vicuna-v0 remnant) is not applied; decoding stops at ``</s>``. (6) The Llama-2 tokenizer is the folder's
fast tokenizer (``AutoTokenizer``); MiniGPT-4 uses the slow sentencepiece ``LlamaTokenizer`` — the ids of these
prompts (the literal ``<s>`` included) should agree, but that is not checked here (no Llama-2 tokenizer offline). (4) HA-DPO's DPO training wraps prompts as
``[INST] <Img><ImageHere></Img> {q} [/INST] `` without the system sentence; we train with the evaluation prompt
above (one template for both). (5) Not verified against the released weights here (no downloads): the tests
check the assembly on tiny random weights in the same layout (shapes, prompt, image-token positions, the
original's embedding-concatenation generation path) — a run on the real checkpoint remains to be compared with
MiniGPT-4's own ``Chat.answer``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from PIL import Image

from bench.models.family import FAMILIES, ImageInput, unwrap
from bench.models.qformer import QFormerFamily, QueryTokenPreprocessor

SYSTEM = ("Give the following image: <Img>ImageContent</Img>. You will be able to see the image once I provide it"
          " to you. Please answer my questions.")
IMAGE_HERE = "<ImageHere>"


def render_prompt(question: str) -> str:
    """``CONV_VISION_LLama2``'s prompt for one image and one question, stripped (``Chat.get_context_emb``)."""
    question = question.replace("<image>", "").strip()
    return f"{SYSTEM}<s>[INST] <Img>{IMAGE_HERE}</Img> {question} [/INST]".strip()


class MiniGPT4Processor:
    """Llama-2 tokenizer + ``BlipImageProcessor`` of an assembled folder."""

    def __init__(self, tokenizer: Any, image_processor: Any):
        self.tokenizer, self.image_processor = tokenizer, image_processor

    @classmethod
    def from_pretrained(cls, folder: Any, **kwargs: Any) -> "MiniGPT4Processor":
        from transformers import AutoTokenizer
        from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

        kwargs.pop("trust_remote_code", None)
        return cls(AutoTokenizer.from_pretrained(folder, **kwargs), BlipImageProcessorPil.from_pretrained(folder, **kwargs))

    def save_pretrained(self, out: Any) -> None:
        self.tokenizer.save_pretrained(out)
        self.image_processor.save_pretrained(out)


@dataclass
class MiniGPT4Preprocessor(QueryTokenPreprocessor):
    """The ``CONV_VISION_LLama2`` prompt with 32 image placeholders at ``<ImageHere>``; fixed 224 px images."""

    processor: Any
    image_token_id: int
    num_query_tokens: int
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def image_processor(self) -> Any:
        return self.processor.image_processor

    def prompt_ids(self, question: str, image_size: tuple[int, int] | None = None) -> list[int]:
        before, after = render_prompt(question).split(IMAGE_HERE)
        return ([self.tokenizer.bos_token_id] + self._encode(before) + [self.image_token_id] * self.num_query_tokens
                + self._encode(after))

    def image_input(self, image: Image.Image) -> ImageInput:
        return ImageInput(self.pixel_values([image])[0])

    def collate(self, inputs: Sequence[ImageInput]) -> tuple[torch.Tensor, dict]:
        return torch.stack([i.pixels for i in inputs]), {}

    def images(self, images: Sequence[Image.Image]) -> tuple[torch.Tensor, dict]:
        return self.pixel_values(images), {}

class MiniGPT4Family(QFormerFamily):
    name = "minigpt4"
    model_types = ("minigpt4",)
    hf_class = "MiniGPT4ForConditionalGeneration"
    generate_continues_cache = False  # its generate embeds the whole prompt, images included, on every call
    description = "MiniGPT-4 (Llama-2 chat): BLIP-2 ViT-g + Q-Former (32 queries) + llama_proj, assembled"
    projector_attr = "llama_proj"

    def model_class(self) -> Any:
        from bench.models.minigpt4_model import MiniGPT4ForConditionalGeneration  # transformers' BLIP-2: on use

        return MiniGPT4ForConditionalGeneration

    def load_processor(self, folder: Any, **kwargs: Any) -> Any:
        import bench.models.minigpt4_model  # noqa: F401  (registers model_type minigpt4 with AutoConfig)

        return MiniGPT4Processor.from_pretrained(folder, **kwargs)

    def make_preprocessor(self, processor: Any, config: Any, pad_square: bool = True) -> MiniGPT4Preprocessor:
        return MiniGPT4Preprocessor(processor=processor, image_token_id=int(config.image_token_id),
                                    num_query_tokens=int(config.num_query_tokens))

    def image_features(self, model: torch.nn.Module, pixel_values: torch.Tensor,
                       extra: dict[str, torch.Tensor]) -> torch.Tensor:
        return unwrap(model).get_image_features(pixel_values)


FAMILIES.add("minigpt4", MiniGPT4Family())
