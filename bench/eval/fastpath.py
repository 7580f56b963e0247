"""Which decoding path the engine takes for a benchmark's items, and one stream interface over all of them.

* ``packed`` — greedy, several questions per image (POPE): :mod:`bench.eval.packed` (prefix shared in
  block-masked rows, no per-question KV copies);
* ``batched`` — greedy, otherwise (captions: CHAIR, AMBER, …): :mod:`bench.eval.batched` (length-sorted
  buckets, preallocated cache, EOS on the device, finished rows leave);
* ``beams`` — beam search (SHR, ``chair-opera``): :mod:`bench.eval.beams` (each prompt prefilled once, not once
  per beam, then transformers' own beam search continues from that cache) for families with the fast paths
  whose ``generate`` continues from a cache (``family.generate_continues_cache``);
* ``generate`` — sampling, beam search of the other families, families whose positions are not plain offsets
  (Qwen2-VL's 3-D rotary positions: ``family.own_greedy()`` is False) and families that opt out of the fast
  paths (:func:`supports_fast_paths`): transformers' ``generate`` on left-padded, length-sorted batches of
  ``batch_size`` (:func:`bench.eval.decode.generate_batch`).

``batch_size == 1`` is the reference path: transformers' ``generate`` one item at a time, no packing.
Every path yields ``(items, texts, skipped)`` per unit of work so the caller appends predictions as they
come (a kill loses at most the unit in flight).
"""

from __future__ import annotations

from typing import Iterator

import torch

from bench.benchmark import EvalItem, GenerationSettings
from bench.errors import DataError
from bench.eval.batched import stream_batched
from bench.eval.beams import stream_beams
from bench.eval.decode import generate_batch, postprocess
from bench.eval.kvcache import LanguageModel
from bench.eval.packed import stream_packed
from bench.models.family import ModelFamily, family_of

PACK_MIN_QUESTIONS_PER_IMAGE = 2.0  # below this mean, packing saves nothing over the batched path


def supports_fast_paths(family: ModelFamily) -> bool:
    """The packed and batched paths build the prompt embeddings themselves: vision features of each distinct
    image from ``family.image_features`` (independent of the question), scattered at the image tokens, then
    ``family.language_model``. A family whose image features depend on the text (a Q-Former reading the
    question, as InstructBLIP's) sets ``fast_paths = False`` and is decoded with ``generate``."""
    return family.fast_paths


def choose_path(model: torch.nn.Module, items: list[EvalItem], gen: GenerationSettings, batch_size: int) -> str:
    """``packed`` | ``batched`` | ``beams`` | ``generate`` | ``reference`` for these items (see the module
    docstring)."""
    if batch_size <= 1:
        return "reference"
    family = family_of(model)
    if gen.do_sample or not family.own_greedy() or not supports_fast_paths(family):
        return "generate"
    if gen.num_beams != 1:
        return "beams" if family.generate_continues_cache else "generate"
    images = {it.image for it in items}
    if (family.prefix_sharing() and LanguageModel(model, family).supports_block_masks() and images
            and len(items) / len(images) >= PACK_MIN_QUESTIONS_PER_IMAGE):
        return "packed"
    return "batched"


def stream(model: torch.nn.Module, pre, items: list[EvalItem], gen: GenerationSettings, device: str,
           batch_size: int = 8, timings: dict | None = None, path: str | None = None
           ) -> Iterator[tuple[list[EvalItem], list[str | None], dict[str, str]]]:
    """Texts of ``items`` (post-processed as the protocol says; None for a skipped item), unit by unit."""
    path = path or choose_path(model, items, gen, batch_size)
    timings = timings if timings is not None else {}
    if path in ("packed", "batched", "beams"):
        run = {"packed": stream_packed, "batched": stream_batched, "beams": stream_beams}[path]
        tok = pre.tokenizer
        with torch.no_grad():
            for chunk, tokens, skipped in run(model, family_of(model), pre, items, gen, device, timings=timings):
                yield chunk, [None if t is None else postprocess(tok.decode(t, skip_special_tokens=True), gen)
                              for t in tokens], skipped
        return
    size = 1 if path == "reference" else batch_size
    ordered = items if path == "reference" else sorted(items, key=lambda it: len(it.question))
    for i in range(0, len(ordered), size):
        chunk = ordered[i:i + size]
        yield chunk, *_generate_chunk(generate_batch, model, pre, chunk, gen, device, timings)


def _generate_chunk(generate_batch, model, pre, chunk: list[EvalItem], gen: GenerationSettings, device: str,
                    timings: dict) -> tuple[list[str | None], dict[str, str]]:
    """``generate`` on a chunk; an unreadable image sends the chunk one by one and skips that item."""
    import time
    from pathlib import Path

    skipped: dict[str, str] = {}
    good = []
    for it in chunk:
        if Path(it.image).exists():
            good.append(it)
        else:
            skipped[it.id] = f"image not found: {it.image}"
    t0 = time.perf_counter()
    try:
        texts = dict(zip([it.id for it in good],
                         generate_batch(model, pre, good, gen, device, use_hf_generate=True) if good else []))
    except DataError:
        texts = {}
        for it in good:
            try:
                texts[it.id] = generate_batch(model, pre, [it], gen, device, use_hf_generate=True)[0]
            except DataError as exc:
                skipped[it.id] = str(exc)
    timings["generate_s"] = timings.get("generate_s", 0.0) + time.perf_counter() - t0
    return [texts.get(it.id) for it in chunk], skipped
