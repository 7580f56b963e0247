"""InstructBLIP (transformers ``InstructBlipForConditionalGeneration``, model_type ``instructblip``;
``Salesforce/instructblip-vicuna-7b`` / ``-13b``), one of HA-DPO's three base models.

Architecture (transformers 5.24 ``models/instructblip``, the port of LAVIS ``blip2_vicuna_instruct``): an EVA ViT-g
vision model (``vision_model``, its ``post_layernorm`` is LAVIS's ``ln_vision``), 32 learned query tokens and a
Q-Former (BERT with cross-attention) that reads the query tokens **and the instruction** (``qformer_input_ids``,
BERT-tokenised), a linear ``language_projection`` to the LLM width, and a Vicuna ``LlamaForCausalLM``
(``language_model``). The 32 projected query outputs replace 32 ``<image>`` placeholder tokens that stand
*before* the text: the LLM sees ``[<image>×32] <s> {instruction}`` (what ``InstructBlipProcessor`` builds, and
the order of LAVIS's ``torch.cat([inputs_llm, embeds(<s> prompt)])``).

Prompt: the bare question — InstructBLIP (LAVIS ``generate(samples={"prompt": question})``, HA-DPO
``ha_dpo/models/instructblip/pope_eval.py`` and ``shr_eval.py`` @abdc44b) wraps it in no chat template; the
same text goes to the Q-Former (truncated to 128 BERT tokens, LAVIS ``max_txt_len``) and to the LLM.
Response: `` {answer}</s>`` after the question (LAVIS tokenises the answer separately and drops its BOS; labels
cover the answer and ``</s>``; the query tokens and the instruction are masked).

Generation settings HA-DPO used for InstructBLIP-13B (``blip2_vicuna_instruct.generate`` defaults, POPE called
with ``num_beams=5``): beam search 5, ``max_length`` 256, ``min_length`` 1, ``repetition_penalty`` 1.5,
``length_penalty`` 1, ``top_p`` 0.9 (unused without sampling). In ``bench`` the decoding belongs to the benchmark
protocol (:class:`bench.benchmark.GenerationSettings`), as for every other family: the ``pope`` protocol decodes
greedily with 512 new tokens; these settings are recorded here, not applied.

LoRA as HA-DPO trains it (``ha_dpo/models/instructblip/README.md`` and ``train_dpo.py``): on the LLM's
``q_proj``, ``k_proj``, ``v_proj``, r 64, alpha 16, dropout 0.05; vision model, Q-Former, query tokens and the
projection frozen (``freeze_llm_proj``); lr 4e-6, 1 epoch, beta 0.1. The registered ``instructblip-7b`` /
``instructblip-13b`` entries apply these LoRA targets to HA-DPO runs (``bench/models/loading.py``).

Engine and loop. The image features depend on the question, so the preprocessor is ``instruction_aware``
(:func:`bench.models.family.prompt_image_input`): each (image, question) gets its own Q-Former pass. In training
every record already gets its own image input, so chosen and rejected share the features of their one
question. **Prefix sharing does not apply**: the image tokens come first but their values depend on the
question, so no KV cache can be shared between two questions about one image; and transformers' forward needs
``qformer_input_ids`` at every step, so greedy batches are decoded with the model's own ``generate``
(``own_greedy`` False) — the path the equality test compares against at batch 1.

Deviations from HA-DPO's code (``vigc``, a LAVIS fork): (1) vigc sets the LLaMA tokenizer's BOS to ``</s>``
(``add_special_tokens({'bos_token': '</s>'})``), so its prompts start with id 2; transformers' processor (which
we follow) starts them with ``<s>``. (2) vigc loads ``instruct_blip_vicuna13b_trimmed.pth`` + ``lmsys/vicuna-13b-v1.1``
in LAVIS layout; we load the transformers conversion ``Salesforce/instructblip-vicuna-13b`` (same weights, HF
layout, safetensors). (3) vigc runs the ViT in fp16 under autocast; we run the whole model in ``--dtype``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from PIL import Image

from bench.errors import BenchError
from bench.models.family import FAMILIES, ImageInput, unwrap
from bench.models.qformer import QFormerFamily, QueryTokenPreprocessor

QFORMER_MAX_LENGTH = 128  # LAVIS blip2_vicuna_instruct max_txt_len: the Q-Former's instruction is truncated here


def pad_qformer(inputs: Sequence[ImageInput], pad_id: int) -> dict[str, torch.Tensor]:
    """``qformer_input_ids`` / ``qformer_attention_mask`` [N, max len] of N images, right-padded."""
    width = max(int(i.extra["qformer_input_ids"].numel()) for i in inputs)
    ids = torch.full((len(inputs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(inputs), width), dtype=torch.long)
    for k, i in enumerate(inputs):
        q = i.extra["qformer_input_ids"]
        ids[k, : q.numel()] = q
        mask[k, : q.numel()] = 1
    return {"qformer_input_ids": ids, "qformer_attention_mask": mask}


@dataclass
class InstructBlipPreprocessor(QueryTokenPreprocessor):
    """Tokenizers and image processor of one InstructBLIP checkpoint (an ``InstructBlipProcessor``)."""

    processor: Any
    image_token_id: int
    num_query_tokens: int
    qformer_max_length: int = QFORMER_MAX_LENGTH
    instruction_aware = True
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def image_processor(self) -> Any:
        return self.processor.image_processor

    @property
    def qformer_tokenizer(self) -> Any:
        return self.processor.qformer_tokenizer

    # ---- text
    @staticmethod
    def _question(question: str) -> str:
        return question.replace("<image>", "").strip()

    def prompt_ids(self, question: str, image_size: tuple[int, int] | None = None) -> list[int]:
        """``[<image>×num_query_tokens]`` + the tokenizer's ids of the question with its special tokens (``<s>``),
        as ``InstructBlipProcessor`` builds them."""
        ids = self.tokenizer(self._question(question), add_special_tokens=True)["input_ids"]
        return [self.image_token_id] * self.num_query_tokens + list(ids)

    def qformer_ids(self, question: str) -> list[int]:
        """The Q-Former's instruction ids (BERT tokenizer, special tokens, at most ``qformer_max_length``)."""
        return self.qformer_tokenizer(self._question(question), add_special_tokens=True, truncation=True,
                                      max_length=self.qformer_max_length)["input_ids"]

    # ---- images
    def image_input(self, image: Image.Image, question: str | None = None) -> ImageInput:
        """The image's pixels [3, H, W] and, with the question, its Q-Former instruction ids."""
        if question is None:
            raise BenchError("InstructBLIP's image input depends on the instruction (Q-Former); pass the question")
        return ImageInput(self.pixel_values([image])[0],
                          {"qformer_input_ids": torch.tensor(self.qformer_ids(question), dtype=torch.long)})

    def collate(self, inputs: Sequence[ImageInput]) -> tuple[torch.Tensor, dict]:
        pad = self.qformer_tokenizer.pad_token_id
        return torch.stack([i.pixels for i in inputs]), pad_qformer(inputs, 0 if pad is None else pad)

    def images(self, images: Sequence[Image.Image], questions: Sequence[str] | None = None
               ) -> tuple[torch.Tensor, dict]:
        if questions is None or len(questions) != len(images):
            raise BenchError("InstructBLIP needs one question per image (the Q-Former reads the instruction)")
        return self.collate([self.image_input(im, q) for im, q in zip(images, questions)])

class InstructBlipFamily(QFormerFamily):
    name = "instructblip"
    model_types = ("instructblip",)
    hf_class = "InstructBlipForConditionalGeneration"
    description = "InstructBLIP: bare-question prompt, 32 instruction-aware Q-Former query tokens before the text"
    fast_paths = False  # the Q-Former reads the question: image features are per (image, question)

    def make_preprocessor(self, processor: Any, config: Any, pad_square: bool = True) -> InstructBlipPreprocessor:
        if getattr(config, "image_token_id", None) is None:
            raise BenchError("this InstructBLIP config has no image_token_index (a snapshot from before transformers"
                             " put <image> placeholders in the prompt); download the current revision")
        return InstructBlipPreprocessor(processor=processor, image_token_id=int(config.image_token_id),
                                        num_query_tokens=int(config.num_query_tokens))

    def image_features(self, model: torch.nn.Module, pixel_values: torch.Tensor,
                       extra: dict[str, torch.Tensor]) -> torch.Tensor:
        if "qformer_input_ids" not in extra:
            raise BenchError("InstructBLIP image features need qformer_input_ids (the instruction)")
        out = unwrap(model).get_image_features(pixel_values=pixel_values, qformer_input_ids=extra["qformer_input_ids"],
                                               qformer_attention_mask=extra.get("qformer_attention_mask"))
        return out.pooler_output

    def own_greedy(self) -> bool:
        return False

    def prefix_sharing(self) -> bool:
        return False


FAMILIES.add("instructblip", InstructBlipFamily())
