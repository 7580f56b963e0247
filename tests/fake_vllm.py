"""A stand-in for the ``vllm`` package in tests (vLLM cannot be installed on the CPU test machines).

It implements only what :mod:`bench.eval.vllm_backend` uses of vLLM's offline API — ``LLM(model=folder, ...)``,
``SamplingParams(...)``, ``LLM.generate(prompts, params, use_tqdm=...)`` returning objects shaped like
``RequestOutput`` (``.prompt_token_ids``, ``.outputs[0].token_ids`` / ``.text`` / ``.finish_reason``) — and
"generates" by running the checkpoint folder it is given with transformers: it expands the single image
placeholder of a token prompt into the checkpoint's image-token count, as vLLM's multimodal processor does, runs
the checkpoint's own image processor on the PIL image it receives (no padding: vLLM does not pad), and decodes
greedily up to ``max_tokens`` or a stop token. Every request and every ``LLM`` construction is recorded so tests can
check what the backend sent. It is NOT vLLM: agreement with the real engine is never established by these tests.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

import torch

__version__ = "0.0-fake"


@dataclass
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0
    n: int = 1
    stop_token_ids: list[int] | None = None
    seed: int | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)


class LLM:
    instances: list["LLM"] = []

    def __init__(self, model: str, tokenizer: str | None = None, dtype: str = "auto", seed: int = 0,
                 limit_mm_per_prompt: dict | None = None, **kwargs):
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        self.kwargs = {"model": model, "tokenizer": tokenizer, "dtype": dtype, "seed": seed,
                       "limit_mm_per_prompt": limit_mm_per_prompt, **kwargs}
        torch_dtype = getattr(torch, dtype) if dtype not in ("auto", None) else torch.float32
        self.model = LlavaForConditionalGeneration.from_pretrained(model, dtype=torch_dtype).eval()
        self.processor = AutoProcessor.from_pretrained(model)
        cfg = self.model.config
        self.image_token_id = cfg.image_token_id
        self.image_tokens = (cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2
        self.requests: list[dict] = []
        self.params: list[SamplingParams] = []
        LLM.instances.append(self)

    @torch.no_grad()
    def generate(self, prompts, sampling_params: SamplingParams, use_tqdm: bool = True) -> list[RequestOutput]:
        prompts = prompts if isinstance(prompts, list) else [prompts]
        self.params.append(sampling_params)
        outs = []
        for k, prompt in enumerate(prompts):
            self.requests.append(prompt)
            ids = prompt["prompt_token_ids"]
            assert ids.count(self.image_token_id) == 1, "one placeholder per prompt (vLLM expands it)"
            at = ids.index(self.image_token_id)
            expanded = ids[:at] + [self.image_token_id] * self.image_tokens + ids[at + 1:]
            image = prompt["multi_modal_data"]["image"]
            pixels = self.processor.image_processor(images=[image], return_tensors="pt")["pixel_values"]
            stops = set(sampling_params.stop_token_ids or []) | {self.processor.tokenizer.eos_token_id}
            assert sampling_params.temperature == 0.0, "the fake decodes greedily only"
            out = self.model.generate(input_ids=torch.tensor([expanded]), attention_mask=torch.ones(1, len(expanded),
                                      dtype=torch.long), pixel_values=pixels.to(self.model.dtype),
                                      max_new_tokens=sampling_params.max_tokens, do_sample=False, num_beams=1,
                                      eos_token_id=sorted(stops), pad_token_id=0)
            new: list[int] = []
            reason = "length"
            for tok in out[0, len(expanded):].tolist():
                new.append(tok)
                if tok in stops:
                    reason = "stop"
                    break
            text = self.processor.tokenizer.decode(new, skip_special_tokens=True)
            outs.append(RequestOutput(str(k), expanded, [CompletionOutput(0, text, new, reason)]))
        return outs


def install(monkeypatch) -> types.ModuleType:
    """Put this module in ``sys.modules`` as ``vllm`` for one test (``LLM.instances`` emptied)."""
    LLM.instances = []
    module = sys.modules[__name__]
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module
