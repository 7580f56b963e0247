"""Prefix sharing without copies: many questions about many images, greedy, in packed rows.

POPE asks 18 questions about each image (6 per split). The prompts of one image share their start — system
sentence, ``USER:``, the image tokens and any common question words — and differ in a short tail. A **row**
holds one image's shared prefix once, followed by the tails of its questions::

    row:       [ prefix (k tokens) | tail_1 | tail_2 | … | tail_m | pad … ]
    positions:   0 … k-1             k …      k …           k …
    tail_j attends: the prefix and the earlier tokens of tail_j only (a block-causal 4-D mask)

so every tail sees exactly the tokens and positions of its own unpadded prompt, and the prefix — vision
features included — is computed once per image, never copied per question. A forward holds many such rows
(one image each; an image whose questions do not fit ``token_budget`` tokens is split over several rows, each
starting with the prefix), right-padded to the longest; the vision tower runs once per distinct image of the
forward. The first answer token of every question is read from its tail's last position (``lm_head`` on
those positions only).

**Decoding** continues in the same rows, on the same cache: each step appends one token per unfinished
question of the row; a new token attends to the prefix, its own tail and its own earlier answer tokens (the
cache columns are labelled with the question they belong to; the mask is built from these labels on the
device). Rows whose questions have all finished leave the batch; finished questions leave their row (they
add no more columns). Answers are a few tokens (POPE: ``Yes``/``No``), so the cache grows by a few columns
per question.

Exactness: every question's logits are computed from the same tokens, positions and weights as its batch-1
prompt; only the attention kernel's reduction layout differs (masked keys contribute exact zeros). On CPU in
float32 the answers are identical to batch-1 ``generate`` on the perf workloads and on tiny-llava POPE
(tested; ``bench eval --verify-against-bs1 N`` re-checks a sample of any run).

Requirements, checked by the caller (:func:`bench.eval.engine.run_benchmark`): the family allows prefix
sharing (plain position offsets after the prefix) and the attention implementation takes a custom 4-D mask
(sdpa, eager). The masks follow transformers' 4-D mask convention (``masking_utils``: a 4-D mask is used as
given); the layout is the shared-prefix / tree-attention idea of speculative and prefix-sharing decoders,
written here for transformers models.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

import torch

from bench.benchmark import EvalItem, GenerationSettings
from bench.errors import DataError
from bench.eval.kvcache import LanguageModel, device_kind
from bench.models.block_mask import segments_allowed
from bench.models.llava import load_image

DEFAULT_TOKEN_BUDGET = {"cpu": 2560, "cuda": 65536}  # prefill tokens per forward (rows × padded length)


@dataclass
class Row:
    """One packed row: an image's shared prefix and the tails of (some of) its questions."""

    image: str
    prefix: list[int]
    tails: list[tuple[int, list[int]]] = field(default_factory=list)  # (item index, tail tokens)

    def __len__(self) -> int:
        return len(self.prefix) + sum(len(t) for _, t in self.tails)


def common_prefix(seqs: list[list[int]]) -> int:
    """Length of the common start of ``seqs``, leaving at least one token to every sequence."""
    n = min(len(s) for s in seqs) - 1
    k = 0
    while k < n and all(s[k] == seqs[0][k] for s in seqs):
        k += 1
    return k


def plan_rows(image: str, prompts: list[tuple[int, list[int]]], token_budget: int,
              image_token_id: int | None = None) -> list[Row]:
    """The rows of one image: the common prefix once per row, tails added in order while the row stays within
    ``token_budget`` tokens (a row always takes at least one tail, so one long question still gets a row).
    When a tail would hold image tokens (a template with the question before the image), every question gets
    its own row (prefix = its prompt but the last token), which is plain batched prefill."""
    k = common_prefix([p for _, p in prompts])
    if image_token_id is not None and any(image_token_id in p[k:] for _, p in prompts):
        return [Row(image, p[:-1], [(idx, p[-1:])]) for idx, p in prompts]
    rows = [Row(image, prompts[0][1][:k])]
    for idx, p in prompts:
        tail = p[k:]
        if rows[-1].tails and len(rows[-1]) + len(tail) > token_budget:
            rows.append(Row(image, rows[-1].prefix))
        rows[-1].tails.append((idx, tail))
    return rows


def forward_batches(rows: list[Row], token_budget: int) -> list[list[Row]]:
    """Consecutive rows (an image's rows stay together) while rows × longest row ≤ ``token_budget``."""
    batches: list[list[Row]] = []
    longest = 0
    for row in rows:
        if batches and (len(batches[-1]) + 1) * max(longest, len(row)) <= token_budget:
            batches[-1].append(row)
            longest = max(longest, len(row))
        else:
            batches.append([row])
            longest = len(row)
    return batches


def _layout(rows: list[Row], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[int, int, int, int, int]]]:
    """ids, positions, segment labels [R, L] (0 prefix, j+1 tail j, -1 padding) and, per question,
    (item index, row, segment, index of the tail's last token, position of its first answer token)."""
    width = max(len(r) for r in rows)
    n = len(rows)
    ids = torch.full((n, width), pad, dtype=torch.long)
    pos = torch.zeros((n, width), dtype=torch.long)
    seg = torch.full((n, width), -1, dtype=torch.long)
    questions = []
    for r, row in enumerate(rows):
        k = len(row.prefix)
        ids[r, :k] = torch.tensor(row.prefix)
        pos[r, :k] = torch.arange(k)
        seg[r, :k] = 0
        at = k
        for j, (idx, tail) in enumerate(row.tails):
            m = len(tail)
            ids[r, at:at + m] = torch.tensor(tail)
            pos[r, at:at + m] = torch.arange(k, k + m)
            seg[r, at:at + m] = j + 1
            questions.append((idx, r, j + 1, at + m - 1, k + m))
            at += m
        pos[r, at:] = torch.arange(width - at) + at  # padding: any position, attends only to padding
    return ids, pos, seg, questions


def image_size(path: str) -> tuple[int, int] | str:
    """(width, height) from the image header, or the reason the item is skipped."""
    from pathlib import Path

    from PIL import Image

    if not Path(path).exists():
        return f"image not found: {path}"
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as exc:  # PIL raises many types
        return f"{path}: unreadable image ({exc})"


def stream_packed(model: torch.nn.Module, family, pre, items: list[EvalItem], gen: GenerationSettings, device: str,
                  token_budget: int | None = None, timings: dict | None = None
                  ) -> Iterator[tuple[list[EvalItem], list[list[int] | None], dict[str, str]]]:
    """Greedy answers of ``items`` (any number of images, several questions each), one forward batch at a time:
    yields (items of the batch, new token ids per item without EOS — None for a skipped item —, skip reasons)."""
    lm = LanguageModel(model, family)
    budget = token_budget or DEFAULT_TOKEN_BUDGET[device_kind(device)]
    timings = timings if timings is not None else {}
    by_image: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_image.setdefault(it.image, []).append(i)
    rows: list[Row] = []
    skipped: dict[str, str] = {}
    for path, idxs in by_image.items():
        size = image_size(path)
        if isinstance(size, str):  # missing or unreadable: every question of the image is skipped
            for i in idxs:
                skipped[items[i].id] = size
            continue
        rows += plan_rows(path, [(i, pre.prompt_ids(items[i].question, size)) for i in idxs], budget,
                          lm.image_token_id)
    if skipped:
        yield [it for it in items if it.id in skipped], [None] * len(skipped), dict(skipped)
    for batch in forward_batches(rows, budget):
        done_items, tokens, skip = _run_batch(lm, pre, items, batch, gen, device, timings)
        yield done_items, tokens, skip


def _run_batch(lm: LanguageModel, pre, items: list[EvalItem], rows: list[Row], gen: GenerationSettings, device: str,
               timings: dict) -> tuple[list[EvalItem], list[list[int] | None], dict[str, str]]:
    skip: dict[str, str] = {}
    t0 = time.perf_counter()
    images: dict[str, int] = {}
    loaded = []
    for row in rows:
        if row.image not in images:
            try:
                loaded.append(pre.image_input(load_image(row.image)))
                images[row.image] = len(loaded) - 1
            except DataError as exc:
                images[row.image] = -1
                for idx, _ in row.tails:
                    skip[items[idx].id] = str(exc)
    bad = [row for row in rows if images[row.image] < 0]
    for row in bad:
        for idx, _ in row.tails:
            skip.setdefault(items[idx].id, f"unreadable image {row.image}")
    rows = [row for row in rows if images[row.image] >= 0]
    batch_idx = [idx for row in [*rows, *bad] for idx, _ in row.tails]
    batch_items = [items[idx] for idx in batch_idx]
    if not rows:
        return batch_items, [None] * len(batch_items), skip
    pixels, extra = pre.collate(loaded)
    feats = lm.image_features(pixels.to(device), {k: v.to(device) for k, v in extra.items()})
    t1 = time.perf_counter()
    pad = pre.tokenizer.pad_token_id if pre.tokenizer.pad_token_id is not None else 0
    ids, pos, seg, questions = _layout(rows, pad)
    ids, pos, seg = ids.to(device), pos.to(device), seg.to(device)
    capacity = ids.shape[1] + 4 * max(len(r.tails) for r in rows)
    cache = lm.new_cache(capacity)
    embeds = lm.embed_ids(ids, [feats[images[row.image]] for row in rows])
    hidden = lm.forward(embeds, lm.block_mask(segments_allowed(seg)), pos, cache)
    last = torch.tensor([q[3] for q in questions], device=device)
    q_rows = torch.tensor([q[1] for q in questions], device=device)
    first = lm.next_tokens(hidden[q_rows, last])
    t2 = time.perf_counter()
    out = _decode(lm, cache, seg, questions, first, gen.max_new_tokens, pre.tokenizer.eos_token_id, pad, device)
    t3 = time.perf_counter()
    timings["vision_s"] = timings.get("vision_s", 0.0) + (t1 - t0)
    timings["prefill_s"] = timings.get("prefill_s", 0.0) + (t2 - t1)
    timings["decode_s"] = timings.get("decode_s", 0.0) + (t3 - t2)
    by_item = {q[0]: toks for q, toks in zip(questions, out)}
    return batch_items, [by_item.get(idx) for idx in batch_idx], skip


def _decode(lm: LanguageModel, cache, seg: torch.Tensor, questions: list[tuple[int, int, int, int, int]],
            first: torch.Tensor, max_new: int, eos: int, pad: int, device: str) -> list[list[int]]:
    """Continue every question from its first token until EOS or ``max_new`` tokens (see the module docstring)."""
    out: list[list[int]] = [[] for _ in questions]
    # per question: row in the current batch, segment label, next position, last token
    state = {qi: [q[1], q[2], q[4], int(t)] for qi, (q, t) in enumerate(zip(questions, first.tolist()))}
    live = []
    for qi, st in state.items():
        if st[3] == eos:
            continue
        out[qi].append(st[3])
        if len(out[qi]) < max_new:
            live.append(qi)
    kv_seg = seg
    row_map = list(range(seg.shape[0]))  # current batch row -> original row
    while live:
        rows_live = sorted({state[qi][0] for qi in live})
        if len(rows_live) < len(row_map):  # rows with no unfinished question leave the batch
            keep = torch.tensor(sorted(row_map.index(r) for r in rows_live), device=device)
            order = cache.compact(keep)  # in place: live rows from the end take the finished rows' places
            kv_seg = kv_seg[order]
            row_map = [row_map[i] for i in order.tolist()]
        slots: list[list[int]] = [[] for _ in row_map]
        for qi in live:
            slots[row_map.index(state[qi][0])].append(qi)
        width = max(len(s) for s in slots)
        tok = torch.full((len(row_map), width), pad, dtype=torch.long)
        pos = torch.zeros((len(row_map), width), dtype=torch.long)
        lab = torch.full((len(row_map), width), -1, dtype=torch.long)
        for r, s in enumerate(slots):
            for j, qi in enumerate(s):
                _, label, p, t = state[qi]
                tok[r, j], pos[r, j], lab[r, j] = t, p, label
        tok, pos, lab = tok.to(device), pos.to(device), lab.to(device)
        kv_seg = torch.cat([kv_seg, lab], dim=1)
        allowed = (kv_seg[:, None, :] == lab[:, :, None]) | (kv_seg[:, None, :] == 0)
        hidden = lm.forward(lm.embed_ids(tok), lm.block_mask(allowed), pos, cache)
        nxt = lm.next_tokens(hidden).tolist()
        still = []
        for r, s in enumerate(slots):
            for j, qi in enumerate(s):
                t = nxt[r][j]
                state[qi][2] += 1
                state[qi][3] = t
                if t == eos:
                    continue
                out[qi].append(t)
                if len(out[qi]) < max_new:
                    still.append(qi)
        live = still
    return out
