"""Batched greedy decoding for long generations (captions: CHAIR, AMBER, MMHal-style open answers).

* **Length-sorted buckets**: items are sorted by prompt length and cut into buckets whose KV cache
  (rows × (longest prompt + ``max_new_tokens``) tokens) fits a memory budget — on CUDA half the free device
  memory, on CPU 1 GiB — and at most ``max_rows`` rows; prompts of a bucket are left-padded (positions from the
  mask, so every row sees its unpadded prompt's positions). The engine chooses its batch; ``eval.batch_size``
  does not limit it.
* **Vision once per distinct image**, projected features scattered into the prompt embeddings
  (:mod:`bench.eval.kvcache`); on CPU in calls of :data:`VISION_IMAGES` images (the ``mid`` perf shape's 32 images
  in one call: vision 0.43 s on average; in calls of 8: 0.37 s — the activations of fewer images stay in the
  caches).
* **The system prompt once per bucket**: the text every prompt of a bucket starts with, before the image
  (vicuna_v1's system sentence: 27 of 289 prompt tokens at the ``mid`` perf shape, ~35 of ~620 for LLaVA-1.5),
  is prefilled once at batch 1 and its keys/values copied into every row; each row's own tokens follow, its
  padding sits between the two (masked; positions from the mask).
* **The last decoder layer at the last prompt position only** during the prefill
  (:func:`bench.eval.kvcache.last_layer_at_last_position`): the other positions need only that layer's keys and
  values (1/L of the prefill's projection and MLP work saved: 10 % at ``mid``, 2.6 % at 7B).
* **One preallocated KV cache per bucket** (:class:`bench.eval.kvcache.GrowingCache`: rows × (prompt +
  ``max_new_tokens``), allocated before the prefill): the prefill chunks write into views of its rows and every
  decode step writes in place, so no token copies the cache and the cache is never held twice; attention reads
  only the filled part.
* **EOS on the device**: the new token of every row, the finished flags and the output buffer stay on the
  device; the host looks at them every ``sync_every`` steps (CUDA: 8; CPU: 1, where a sync costs nothing
  and an extra step does), and then **finished rows leave the batch**: live rows from the end of the batch move
  into the finished rows' places in the same buffers (``GrowingCache.compact``: only those rows are copied,
  nothing is allocated). Tokens a finished row produced before the check are discarded.
* **Weights packed once per batch** on CPU in float32 (:mod:`bench.eval.prepack`): every decode step's linear
  layers and head run on MKL-packed copies made for the batch's row count (re-packed when rows leave), instead
  of sgemm packing each weight again at every call (``mid`` perf captions: decode 2.4 → 2.0 s).

Exactness: each row's logits come from its own tokens and positions with padding masked, so on CPU in float32
the outputs equal batch-1 ``generate`` (tested on tiny-llava CHAIR and the ``mid`` perf captions).

The buckets (:func:`stream_buckets`) and the prefill (:func:`prefill_bucket`) also serve beam search
(:mod:`bench.eval.beams`), whose decoding is transformers' own. ``torch.compile`` / CUDA graphs are not used
(untested without a GPU; the growing cache's changing shapes would need a static-shape decode step first).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Iterator

import torch

from bench.benchmark import EvalItem, GenerationSettings
from bench.errors import DataError
from bench.eval.kvcache import GrowingCache, LanguageModel, device_kind, num_layers
from bench.eval.packed import common_prefix, image_size
from bench.models.llava import load_image

CPU_KV_BYTES = 1 << 30
MAX_ROWS = {"cpu": 64, "cuda": 256}
PREFILL_TOKENS = {"cpu": 2560, "cuda": 65536}  # prompt tokens per prefill forward
VISION_IMAGES = {"cpu": 8, "cuda": None}  # images per vision-tower call (None: the whole bucket at once)
MIN_SHARED_PREFIX = 8  # shorter common prefixes are prefilled with each row


def kv_bytes_per_token(lm: LanguageModel) -> int:
    heads, head_dim = lm.kv_heads_and_dim()
    return 2 * num_layers(lm.lm) * heads * head_dim * lm.embed.weight.element_size()


def kv_token_budget(lm: LanguageModel, device: str) -> int:
    """KV-cache tokens one bucket may hold (see the module docstring)."""
    per_token = kv_bytes_per_token(lm)
    if device_kind(device) == "cuda":
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return max(1, int(free * 0.5) // per_token)
    return max(1, CPU_KV_BYTES // per_token)


def plan_buckets(lengths: list[int], max_new: int, budget_tokens: int, max_rows: int) -> list[list[int]]:
    """Indices sorted by prompt length (stable), cut so that rows × (longest + max_new) ≤ budget and
    rows ≤ max_rows; a bucket always takes at least one row."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    buckets: list[list[int]] = []
    for i in order:
        if buckets:
            b = buckets[-1]
            longest = max(lengths[b[-1]], lengths[i])
            if len(b) < max_rows and (len(b) + 1) * (longest + max_new) <= budget_tokens:
                b.append(i)
                continue
        buckets.append([i])
    return buckets


def shared_text_prefix(prompts: list[list[int]], image_token_id: int | None) -> int:
    """Length of the token prefix every prompt starts with, up to (not including) the first image token —
    text whose keys and values are the same in every row (the system prompt). 0 when shorter than
    :data:`MIN_SHARED_PREFIX` tokens, or when it would leave a prompt with nothing to prefill."""
    k = common_prefix(prompts)
    if image_token_id is not None and image_token_id in prompts[0][:k]:
        k = prompts[0].index(image_token_id)
    k = min(k, min(len(p) for p in prompts) - 1)
    return k if k >= MIN_SHARED_PREFIX else 0


def stream_batched(model: torch.nn.Module, family, pre, items: list[EvalItem], gen: GenerationSettings, device: str,
                   timings: dict | None = None, max_rows: int | None = None, sync_every: int | None = None
                   ) -> Iterator[tuple[list[EvalItem], list[list[int] | None], dict[str, str]]]:
    """Greedy answers of ``items``, one bucket at a time: yields (bucket items, new token ids without EOS per
    item — None for a skipped item —, skip reasons)."""
    sync_every = sync_every or (8 if device_kind(device) == "cuda" else 1)

    def run(lm, bucket_items, prompts, timings):
        return _greedy_bucket(lm, pre, bucket_items, prompts, gen, device, timings, sync_every)
    yield from stream_buckets(model, family, pre, items, device, run, new_tokens=gen.max_new_tokens,
                              rows_per_item=1, timings=timings, max_rows=max_rows)


def stream_buckets(model: torch.nn.Module, family, pre, items: list[EvalItem], device: str, run_bucket,
                   new_tokens: int, rows_per_item: int = 1, cache_copies: int = 1, timings: dict | None = None,
                   max_rows: int | None = None) -> Iterator[tuple[list[EvalItem], list, dict[str, str]]]:
    """Items whose image cannot be read are yielded first (skipped); the rest go, sorted by prompt length, in
    buckets of at most ``max_rows`` rows — ``rows_per_item`` rows per item (beams) — whose cache, held
    ``cache_copies`` times, of rows × (prompt + ``new_tokens``) tokens fits the memory budget, each through
    ``run_bucket(lm, items, prompts, timings) -> (outputs, skip reasons)``."""
    lm = LanguageModel(model, family)
    max_rows = max_rows or MAX_ROWS[device_kind(device)]
    timings = timings if timings is not None else {}
    prompts: list[list[int] | None] = []
    skipped: dict[str, str] = {}
    sizes: dict[str, tuple[int, int] | str] = {}
    for it in items:
        size = sizes.setdefault(it.image, image_size(it.image))
        if isinstance(size, str):
            skipped[it.id] = size
            prompts.append(None)
        else:
            prompts.append(pre.prompt_ids(it.question, size))
    if skipped:
        yield [it for it in items if it.id in skipped], [None] * len(skipped), dict(skipped)
    good = [i for i, p in enumerate(prompts) if p is not None]
    lengths = [len(prompts[i]) for i in good]
    budget = max(1, kv_token_budget(lm, device) // (rows_per_item * cache_copies))
    for bucket in plan_buckets(lengths, new_tokens, budget, max(1, max_rows // rows_per_item)):
        idxs = [good[b] for b in bucket]
        yield ([items[i] for i in idxs], *run_bucket(lm, [items[i] for i in idxs], [prompts[i] for i in idxs],
                                                     timings))


@dataclasses.dataclass
class Prefill:
    """A bucket's prompts after :func:`prefill_bucket`: ``keep`` — indices (into the bucket's items) of the rows,
    in row order; ``ids`` [rows, width] — the prompt layout (shared prefix, padding, own tokens); ``mask``
    [rows, width + new tokens] — 1 on real tokens and on every slot after ``width``; ``positions`` [rows, width];
    ``cache`` — filled up to ``width``, room for the new tokens; ``next_tokens`` — greedy next token per row
    (None unless asked); ``skip`` — reasons of the items left out."""
    keep: list[int]
    ids: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor
    cache: GrowingCache
    width: int
    padded: bool
    next_tokens: torch.Tensor | None
    skip: dict[str, str]


def prefill_bucket(lm: LanguageModel, pre, items: list[EvalItem], prompts: list[list[int]], device: str,
                   new_tokens: int, timings: dict, next_tokens: bool = True, rows_per_item: int = 1) -> Prefill:
    """Vision once per distinct image of the bucket, then the prompts' prefill into one preallocated cache of
    ``width + new_tokens`` tokens per row (see the module docstring: shared system prompt, chunks writing into
    row views, the last layer at the last position only). Adds ``vision_s`` and ``prefill_s`` to ``timings``.

    ``rows_per_item``: the cache is allocated with that many rows per kept item (beams: ``GrowingCache.repeat_rows``
    then fills them in place); the prefill writes rows ``0..n-1``."""
    t0 = time.perf_counter()
    skip: dict[str, str] = {}
    slot: dict[str, int] = {}
    loaded = []
    for it in items:
        if it.image in slot:
            continue
        try:
            loaded.append(pre.image_input(load_image(it.image, item=it.id)))
            slot[it.image] = len(loaded) - 1
        except DataError as exc:
            slot[it.image] = -1
            skip[it.id] = str(exc)
    keep = [i for i, it in enumerate(items) if slot[it.image] >= 0]
    for i, it in enumerate(items):
        if slot[it.image] < 0:
            skip.setdefault(it.id, f"unreadable image {it.image}")
    if not keep:
        empty = torch.zeros((0, 0), dtype=torch.long)
        return Prefill(keep, empty, empty, empty, lm.new_cache(0), 0, False, None, skip)
    feats = []
    per_call = VISION_IMAGES[device_kind(device)] or len(loaded)
    for a in range(0, len(loaded), per_call):
        pixels, extra = pre.collate(loaded[a:a + per_call])
        feats += lm.image_features(pixels.to(device), {k: v.to(device) for k, v in extra.items()})
    t1 = time.perf_counter()
    rows = [prompts[i] for i in keep]
    n, width = len(rows), max(len(p) for p in rows)
    pad = pre.tokenizer.pad_token_id if pre.tokenizer.pad_token_id is not None else 0
    shared = shared_text_prefix(rows, lm.image_token_id) if n >= 2 else 0
    # row r: the shared prefix, then padding, then the rest of its prompt (with no shared prefix: left padding)
    ids = torch.full((n, width), pad, dtype=torch.long)
    att = torch.zeros((n, width + new_tokens), dtype=torch.long)
    for r, p in enumerate(rows):
        ids[r, :shared] = torch.tensor(p[:shared])
        ids[r, width - len(p) + shared:] = torch.tensor(p[shared:])
        att[r, :shared] = 1
        att[r, width - len(p) + shared:] = 1  # and every new token
    padded = any(len(p) < width for p in rows)
    ids, att = ids.to(device), att.to(device)
    pos = (att[:, :width].cumsum(-1) - 1).clamp(min=0)
    # one cache for the whole bucket, allocated once; prefill chunks write into views of its rows
    cache = lm.new_cache(width + new_tokens, rows=n * rows_per_item)
    if shared:  # the text every prompt of the bucket starts with (system prompt): once, at batch 1, then copied
        prefix_cache = lm.new_cache(shared)
        lm.forward(lm.embed_ids(ids[:1, :shared]), None, pos[:1, :shared], prefix_cache)
        cache.fill_prefix(prefix_cache)
        del prefix_cache
    # prefill in chunks of about PREFILL_TOKENS tokens (on CPU a 32-row prefill is ~20 % slower than four 8-row
    # ones: its activations leave the caches)
    step = max(1, PREFILL_TOKENS[device_kind(device)] // width)
    firsts = []
    for a in range(0, n, step):
        b = min(n, a + step)
        embeds = lm.embed_ids(ids[a:b, shared:], [feats[slot[items[i].image]] for i in keep[a:b]])
        hidden = lm.forward(embeds, att[a:b, :width] if padded else None, pos[a:b, shared:], cache.row_view(a, b),
                            last_only=True)
        if next_tokens:
            firsts.append(lm.next_tokens(hidden[:, -1]))
    cache.set_length(width)
    t2 = time.perf_counter()
    timings["vision_s"] = timings.get("vision_s", 0.0) + (t1 - t0)
    timings["prefill_s"] = timings.get("prefill_s", 0.0) + (t2 - t1)
    return Prefill(keep, ids, att, pos, cache, width, padded, torch.cat(firsts) if next_tokens else None, skip)


def _greedy_bucket(lm: LanguageModel, pre, items: list[EvalItem], prompts: list[list[int]], gen: GenerationSettings,
                   device: str, timings: dict, sync_every: int) -> tuple[list[list[int] | None], dict[str, str]]:
    max_new = gen.max_new_tokens
    pf = prefill_bucket(lm, pre, items, prompts, device, max_new, timings)
    result: list[list[int] | None] = [None] * len(items)
    if not pf.keep:
        return result, pf.skip
    t2 = time.perf_counter()
    n, width, cache, att, padded, nxt = len(pf.keep), pf.width, pf.cache, pf.mask, pf.padded, pf.next_tokens
    eos = pre.tokenizer.eos_token_id
    out = torch.full((n, max_new), -1, dtype=torch.long, device=device)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    last = pf.positions[:, -1]
    row_of = list(range(n))  # current batch row -> index into rows
    finished: dict[int, torch.Tensor] = {}
    with lm.packed_decode(n) as packs:  # CPU float32: weights packed once for the batch (bench.eval.prepack)
        for t in range(max_new):
            done = done | (nxt == eos)
            out[:, t] = nxt.masked_fill(done, -1)
            if t == max_new - 1:
                break
            if (t + 1) % sync_every == 0:
                alive = (~done).nonzero().flatten()
                if alive.numel() == 0:
                    break
                if alive.numel() < len(row_of):  # finished rows leave the batch
                    for r in (done.nonzero().flatten()).tolist():
                        finished[row_of[r]] = out[r]
                    order = cache.compact(alive)  # in place: live rows from the end fill the finished rows
                    row_of = [row_of[r] for r in order.tolist()]
                    if packs is not None:
                        packs.set_rows(len(row_of))
                    out, done, nxt, last, att = out[order], done[order], nxt[order], last[order], att[order]
                    padded = padded and bool((att[:, :width] == 0).any())
            last = last + 1
            length = width + t + 1
            hidden = lm.forward(lm.embed_ids(nxt[:, None]), att[:, :length] if padded else None, last[:, None], cache)
            nxt = lm.next_tokens(hidden[:, -1])
    for r, orig in enumerate(row_of):
        finished[orig] = out[r]
    for r, orig in enumerate(pf.keep):
        toks = finished[r].tolist()
        result[orig] = toks[: toks.index(-1)] if -1 in toks else toks
    timings["decode_s"] = timings.get("decode_s", 0.0) + (time.perf_counter() - t2)
    return result, pf.skip
