"""Generation for the data pipelines: a checkpoint as a plain ``generate(images, prompts) -> texts`` function.

The data pipelines (:mod:`bench.data.pipelines`) need the model they train to describe images (HA-DPO,
HSA-DPO) or to sample on-policy rollouts (OPA-DPO). They get it here, through the same eval engine
(:func:`bench.eval.decode.generate_batch`) and loading path as the benchmarks, so a pipeline's generations
and a benchmark's predictions come from one code path. The generator id names the checkpoint fingerprint,
the token budget, greedy or sampled decoding and the dtype; the pipelines key their per-item cache on it.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from bench.benchmark import EvalItem, GenerationSettings
from bench.eval.decode import generate_batch
from bench.fingerprint import model_fingerprint
from bench.models.loading import load_for_eval
from bench.plugins import load_plugins
from bench.runtime import DTYPES, resolve_device


def model_generate(model_name: str, adapter: str | None, device: str, max_new_tokens: int, sample: bool,
                   temperature: float, batch_size: int, dtype: str, seed: int
                   ) -> tuple[Callable[[list[str], list[str]], list[str]], str, Any]:
    """(generate(images, prompts) -> texts, generator id, model entry) for a checkpoint, through the eval engine."""
    load_plugins()
    device = resolve_device(device)
    torch_dtype = DTYPES[dtype]
    torch.manual_seed(seed)
    model, pre, entry = load_for_eval(model_name, adapter, dtype=torch_dtype, device=device)
    gen = GenerationSettings(max_new_tokens=max_new_tokens, do_sample=sample, temperature=temperature)

    def generate(images: list[str], prompts: list[str]) -> list[str]:
        out: list[str] = []
        for start in range(0, len(images), max(1, batch_size)):
            items = [EvalItem(str(start + k), img, q) for k, (img, q) in
                     enumerate(zip(images[start:start + batch_size], prompts[start:start + batch_size]))]
            out.extend(generate_batch(model, pre, items, gen, device))
        return out

    gid = (f"{entry.name}:{model_fingerprint(entry, adapter, torch_dtype, device, model)[0]}:tok{max_new_tokens}:"
           f"{'sample-t' + str(temperature) if sample else 'greedy'}:{dtype}")
    return generate, gid, entry
