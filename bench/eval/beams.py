"""Beam search (SHR's 5 beams, ``chair-opera``) on a prompt prefilled once per item, not once per beam.

transformers' ``generate(num_beams=k)`` repeats every prompt k times before its prefill
(``_expand_inputs_for_generation``): the image + prompt tokens of each item run through the language model k
times, to produce k identical key/value caches. Here each bucket of items (the length-sorted, memory-budgeted
buckets of :mod:`bench.eval.batched`) is prefilled once per item — vision once per distinct image, the system
prompt once per bucket, the last layer at the last position only (:func:`bench.eval.batched.prefill_bucket`) —
up to, not including, each prompt's last token, into a cache allocated with k rows per item; each item's row is
then copied in place to its k beam rows (``GrowingCache.repeat_rows``, beam b of item i at row ``i·k + b``, the
order ``generate`` uses) and the cache handed to ``generate`` with the whole prompt. ``generate`` runs only the
uncached last token for every beam and then its own beam search, unchanged: scoring, length penalty, early
stopping and EOS handling are transformers' (5.24 ``generation/utils.py``: ``_prefill`` slices the input to the
tokens after the cache; ``_beam_search``).

Prefill work saved: (k − 1)/k of it (80 % at 5 beams). Decoding is ``generate``'s; its cache reordering
(``reorder_cache``) moves beams only within their item, whose beams hold the same prompt keys and values, so only
the slots generated since the repeat are gathered (through a scratch buffer kept for the next step) and written
back in place: the prompt is never copied again and a reorder allocates nothing (``DynamicCache`` gathers the
whole cache into new tensors at every step, and concatenates a step's keys and values onto it). On the ``mid``
perf beam workload (16 images × 5 beams × 24 tokens, 2-core CPU) this took the engine from 7.9 to 5.2 s: the
whole-prompt gathers into newly allocated buffers had cost 3.4 s. On CPU in float32 the linear weights are packed
once for the n·k beam rows (:mod:`bench.eval.prepack`).

Exactness: the prefill computes per row what ``generate``'s own prefill computes (same tokens, positions from the
mask, padding masked), so on CPU in float32 the texts equal batch-1 ``generate`` (tested on tiny LLaVA, LLaVA-NeXT
and the ``mid`` perf workload). Used for families with the fast paths whose ``generate`` continues from a
cache given with the full prompt (``ModelFamily.generate_continues_cache``).
"""

from __future__ import annotations

import time
from typing import Iterator

import torch

from bench.benchmark import EvalItem, GenerationSettings
from bench.eval.batched import prefill_bucket, stream_buckets
from bench.eval.kvcache import LanguageModel, cache_kwarg
from bench.models.family import unwrap


def stream_beams(model: torch.nn.Module, family, pre, items: list[EvalItem], gen: GenerationSettings, device: str,
                 timings: dict | None = None, max_rows: int | None = None
                 ) -> Iterator[tuple[list[EvalItem], list[list[int] | None], dict[str, str]]]:
    """Beam-search answers of ``items``, one bucket at a time: yields (bucket items, the best beam's new token
    ids per item — as ``generate`` returns them, padding included; None for a skipped item —, skip reasons)."""
    if gen.num_beams < 2 or gen.do_sample:
        raise ValueError(f"stream_beams is for beam search without sampling, got num_beams={gen.num_beams},"
                         f" do_sample={gen.do_sample}")

    def run(lm, bucket_items, prompts, timings):
        return _beam_bucket(lm, pre, bucket_items, prompts, gen, device, timings)
    # the budget counts the cache twice: a reorder that moves a beam to another item (never done by transformers'
    # beam search) falls back to GrowingLayer.keep_rows and its second set of buffers
    yield from stream_buckets(model, family, pre, items, device, run, new_tokens=gen.max_new_tokens + 1,
                              rows_per_item=gen.num_beams, cache_copies=2, timings=timings, max_rows=max_rows)


def _beam_bucket(lm: LanguageModel, pre, items: list[EvalItem], prompts: list[list[int]], gen: GenerationSettings,
                 device: str, timings: dict) -> tuple[list[list[int] | None], dict[str, str]]:
    # the last prompt token is left to generate: its first step must produce the logits every beam starts from
    heads = [p[:-1] for p in prompts]
    pf = prefill_bucket(lm, pre, items, heads, device, gen.max_new_tokens + 1, timings, next_tokens=False,
                        rows_per_item=gen.num_beams)
    result: list[list[int] | None] = [None] * len(items)
    if not pf.keep:
        return result, pf.skip
    t0 = time.perf_counter()
    n, k = len(pf.keep), gen.num_beams
    last = torch.tensor([prompts[i][-1] for i in pf.keep], dtype=torch.long, device=pf.ids.device)
    ids = torch.cat([pf.ids, last[:, None]], dim=1)
    mask = pf.mask[:, : pf.width + 1]  # the prompt's mask; column `width` (the last token) is 1 in every row
    pf.cache.repeat_rows(n, k)  # in place: the prefill allocated n·k rows
    tok = pre.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    with lm.packed_decode(n * k):  # CPU float32: weights packed once for the n·k beam rows (bench.eval.prepack)
        out = lm.model.generate(input_ids=ids, attention_mask=mask, **{cache_kwarg(unwrap(lm.model)): pf.cache},
                                max_new_tokens=gen.max_new_tokens, num_beams=k, do_sample=False, pad_token_id=pad,
                                eos_token_id=tok.eos_token_id, **lm.family.generate_inputs(lm.model, ids))
    for r, orig in enumerate(pf.keep):
        result[orig] = out[r, ids.shape[1]:].tolist()
    timings["decode_s"] = timings.get("decode_s", 0.0) + (time.perf_counter() - t0)
    return result, pf.skip
