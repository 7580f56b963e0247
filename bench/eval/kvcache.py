"""The engine's language-model step: image features scattered into embeddings, one forward on a preallocated
KV cache, ``lm_head`` only where a next token is wanted.

**Cache** (:class:`GrowingCache`): per layer one key and one value buffer ``[rows, heads, capacity, head_dim]``
allocated once for the expected length (prompt + new tokens) and grown by doubling only when a sequence
outlives it. Each step writes the new keys/values in place and attention reads a view of the filled part,
so a decode step copies nothing — transformers' ``DynamicCache`` concatenates, i.e. copies the whole
cache, at every token (a third of a decode step at the ``mid`` perf shape on CPU). Finished rows leave the batch
in place (:meth:`GrowingCache.compact`); beam search's reorders copy only the generated slots
(:meth:`GrowingCache.reorder_cache`). Unlike transformers' ``StaticCache`` the attention
never runs over unfilled slots, so it computes exactly what the dynamic cache computes.

**Forward** (:func:`lm_step`): the checkpoint's family gives the language model
(:meth:`bench.models.family.ModelFamily.language_model`) and the vision features; the output embedding
(``get_output_embeddings``) is applied to the positions whose next token is wanted only, never to the whole
prompt. This is the decomposition ``LlavaForConditionalGeneration.forward`` makes itself (embed, scatter the
projected image features at the image-token positions, language model, ``lm_head``); transformers 5.24
``models/llava/modeling_llava.py``.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Iterator

import torch
from transformers.cache_utils import Cache, DynamicLayer

from bench.errors import BenchError
from bench.eval.prepack import PackedLinears, is_plain_linear, linear_modules, packable
from bench.models.block_mask import BLOCK_MASK_ATTENTION, attention_implementation, attention_mask
from bench.models.family import ModelFamily, unwrap


def device_kind(device: Any) -> str:
    """``"cuda"`` for a CUDA device, else ``"cpu"``: the key of the engine's per-kind settings (budgets, chunk
    sizes)."""
    return "cuda" if str(device).startswith("cuda") else "cpu"


HEAD_SLICE = 4096  # vocabulary rows per slice of the greedy head on CPU (see LanguageModel.next_tokens)


class GrowingLayer(DynamicLayer):
    """One layer of :class:`GrowingCache` (see the module docstring)."""

    def __init__(self, capacity: int = 0):
        super().__init__()
        self.capacity_hint = capacity
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self._spare: tuple[torch.Tensor, torch.Tensor] | None = None  # the buffers before the last keep_rows
        self._scratch: tuple[torch.Tensor, torch.Tensor] | None = None  # for permute_within_groups
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self.is_initialized = True

    def _grow(self, need: int, like_k: torch.Tensor, like_v: torch.Tensor) -> None:
        cap = max(need, self.capacity_hint, 2 * (0 if self._k is None else self._k.shape[-2]))
        b, h, _, dk = like_k.shape
        k = like_k.new_empty((b, h, cap, dk))
        v = like_v.new_empty((b, h, cap, like_v.shape[-1]))
        if self.length:
            k[:, :, : self.length] = self._k[:, :, : self.length]
            v[:, :, : self.length] = self._v[:, :, : self.length]
        self._k, self._v = k, v
        self._spare = self._scratch = None  # buffers of the old capacity are of no further use

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if self._k is None or end > self._k.shape[-2]:
            self._grow(end, key_states, value_states)
        self._k[:, :, self.length:end] = key_states
        self._v[:, :, self.length:end] = value_states
        self.length = end
        self.keys, self.values = self._k[:, :, :end], self._v[:, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def set_length(self, length: int) -> None:
        """Declare the first ``length`` slots filled (they were written through a view of the buffers)."""
        self.length = length
        self.keys, self.values = self._k[:, :, :length], self._v[:, :, :length]

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Gather ``rows`` of the filled part into buffers of the same capacity. Only the filled slots are copied
        (beam search reorders every step, early in a capacity of prompt + 512 tokens); when the row count does not
        change (beams) the previous buffers are kept and reused at the next call, so a reorder allocates
        nothing."""
        if self._k is None:
            return
        shape = (rows.numel(),) + tuple(self._k.shape[1:])
        spare = self._spare if self._spare is not None and tuple(self._spare[0].shape) == shape else None
        k, v = spare if spare is not None else (self._k.new_empty(shape), self._v.new_empty(shape[:3] +
                                                                                          self._v.shape[3:]))
        end = self.length
        torch.index_select(self._k[:, :, :end], 0, rows, out=k[:, :, :end])
        torch.index_select(self._v[:, :, :end], 0, rows, out=v[:, :, :end])
        self._spare = (self._k, self._v) if tuple(self._k.shape) == shape else None
        self._k, self._v = k, v
        self.keys, self.values = self._k[:, :, :end], self._v[:, :, :end]

    def move_rows(self, dst: torch.Tensor, src: torch.Tensor, keep: int) -> None:
        """Copy the filled slots of rows ``src`` onto rows ``dst`` in place, then keep the first ``keep`` rows (a
        view: no new buffers; see :meth:`GrowingCache.compact`)."""
        if self._k is None:
            return
        end = self.length
        if dst.numel():
            for buf in (self._k, self._v):
                filled = buf[:, :, :end]
                filled.index_copy_(0, dst, filled.index_select(0, src))
        self._k, self._v = self._k[:keep], self._v[:keep]
        self._spare = self._scratch = None
        self.keys, self.values = self._k[:, :, :end], self._v[:, :, :end]

    def repeat_rows(self, rows: int, repeats: int) -> None:
        """Rows ``0..rows-1`` become rows ``i·repeats … i·repeats + repeats - 1`` (beam search's start), written in
        place when the buffers hold ``rows × repeats`` rows (allocated so by the prefill), else into new buffers."""
        if self._k is None:
            return
        end, total = self.length, rows * repeats
        if self._k.shape[0] < total:
            self.keep_rows(torch.arange(rows, device=self._k.device).repeat_interleave(repeats))
            return
        self._k, self._v = self._k[:total], self._v[:total]
        for buf in (self._k, self._v):
            for i in reversed(range(rows)):  # row i's targets start at i·repeats ≥ i: rows below i are still intact
                src = buf[i:i + 1, :, :end]
                first = i * repeats + (1 if i == 0 else 0)  # row 0 already holds itself
                buf[first:(i + 1) * repeats, :, :end].copy_(src.expand((i + 1) * repeats - first, -1, -1, -1))
        self._spare = None
        self.keys, self.values = self._k[:, :, :end], self._v[:, :, :end]

    def permute_within_groups(self, rows: torch.Tensor, shared: int) -> None:
        """:meth:`keep_rows` for a permutation whose rows stay in their group of rows that hold the same keys and
        values in slots ``0..shared-1`` (the beams of one item after :meth:`repeat_rows`): those slots are equal
        in source and target row, so only the slots from ``shared`` on are gathered (through a scratch buffer
        kept for the next call) and written back in place."""
        if self._k is None or self.length <= shared:
            return
        end = self.length
        tail = (self._k.shape[0], self._k.shape[1], self._k.shape[2] - shared)
        if self._scratch is None or tuple(self._scratch[0].shape[:3]) != tail:
            self._scratch = (self._k.new_empty(tail + self._k.shape[3:]), self._v.new_empty(tail + self._v.shape[3:]))
        for buf, scratch in zip((self._k, self._v), self._scratch):
            gathered = scratch[:, :, : end - shared]
            torch.index_select(buf[:, :, shared:end], 0, rows, out=gathered)
            buf[:, :, shared:end].copy_(gathered)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.keep_rows(indices)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.keep_rows(beam_idx.to(self.device))

    def crop(self, tokens_to_remove: int) -> None:
        """Drop the last ``-tokens_to_remove`` tokens (transformers' convention: a negative count)."""
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative number of tokens to remove, got {tokens_to_remove}")
        if self._k is None:
            self.length = max(0, self.length + tokens_to_remove)
        else:
            self.set_length(max(0, self.length + tokens_to_remove))


class GrowingCache(Cache):
    """A KV cache of preallocated, in-place-written layers (``capacity`` = expected tokens per row)."""

    def __init__(self, num_layers: int, capacity: int):
        super().__init__(layers=[GrowingLayer(capacity) for _ in range(num_layers)])
        self.group, self.shared = 1, 0  # rows in consecutive groups of `group` hold equal slots 0..shared-1

    def _first_keys(self) -> torch.Tensor | None:
        """The first layer's key buffer (its rows and device are every layer's), or None before any update."""
        return self.layers[0]._k if self.layers else None

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (indices into the batch dimension), in that order."""
        for layer in self.layers:
            layer.keep_rows(rows)
        self.group, self.shared = 1, 0

    def compact(self, alive: torch.Tensor) -> torch.Tensor:
        """Keep the rows ``alive`` (ascending indices) as the first ``len(alive)`` rows, in place: each finished row
        below that count takes over one live row from above it, so only those rows are copied and nothing is
        allocated (:meth:`keep_rows` gathers every kept row into new buffers). Returns, for each new row, the old
        row it holds (live rows below the count stay where they are)."""
        first = self._first_keys()
        if first is None:
            return alive
        m, n = alive.numel(), first.shape[0]
        is_alive = torch.zeros(n, dtype=torch.bool, device=alive.device)
        is_alive[alive] = True
        holes = (~is_alive[:m]).nonzero().flatten()
        movers = alive[alive >= m]
        order = torch.arange(m, device=alive.device)
        order[holes] = movers
        for layer in self.layers:
            layer.move_rows(holes.to(first.device), movers.to(first.device), m)
        self.group, self.shared = 1, 0
        return order

    def repeat_rows(self, rows: int, repeats: int) -> None:
        """Each of the first ``rows`` rows ``repeats`` times, in order (beam b of item i at row i·repeats + b, as
        ``generate`` lays out beams); in place when the buffers were allocated for ``rows × repeats`` rows. The
        rows of an item then share their filled slots, which :meth:`reorder_cache` does not copy."""
        for layer in self.layers:
            layer.repeat_rows(rows, repeats)
        self.group, self.shared = repeats, self.get_seq_length()

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Beam search's reorder: when every row's source is a beam of the same item (always, for transformers'
        beam search after :meth:`repeat_rows`), only the slots written since the repeat are gathered; otherwise
        the filled part of every row (:meth:`keep_rows`)."""
        first = self._first_keys()
        rows = beam_idx if first is None else beam_idx.to(first.device)
        if self.group > 1:
            group_of = torch.arange(rows.numel(), device=rows.device) // self.group
            if rows.numel() == self.layers[0].keys.shape[0] and bool((rows // self.group == group_of).all()):
                for layer in self.layers:
                    layer.permute_within_groups(rows, self.shared)
                return
        self.keep_rows(rows)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.keep_rows(indices)

    def batch_repeat_interleave(self, repeats: int) -> None:
        first = self._first_keys()
        if first is not None:
            self.keep_rows(torch.arange(first.shape[0], device=first.device).repeat_interleave(repeats))

    def allocate(self, rows: int, heads: int, head_dim: int, dtype: torch.dtype, device: Any) -> None:
        """Allocate every layer's buffers now (``rows`` × ``heads`` × capacity × ``head_dim``), empty, so that
        :meth:`row_view` can hand out parts of them."""
        for layer in self.layers:
            shape = (rows, heads, layer.capacity_hint, head_dim)
            layer._k = torch.empty(shape, dtype=dtype, device=device)
            layer._v = torch.empty(shape, dtype=dtype, device=device)
            layer.lazy_initialization(layer._k, layer._v)
            layer.set_length(0)

    def fill_prefix(self, prefix: "GrowingCache") -> None:
        """Copy the one row of ``prefix`` into the start of every row (an allocated, empty cache)."""
        for layer, src in zip(self.layers, prefix.layers):
            layer._k[:, :, : src.length] = src.keys
            layer._v[:, :, : src.length] = src.values
            layer.set_length(src.length)

    def row_view(self, start: int, stop: int) -> "GrowingCache":
        """A cache of rows ``start:stop`` that writes into this one's buffers (a prefill chunk's cache: nothing is
        copied afterwards; call :meth:`set_length` here once every chunk has run)."""
        view = GrowingCache(len(self.layers), 0)
        for layer, src in zip(view.layers, self.layers):
            layer._k, layer._v = src._k[start:stop], src._v[start:stop]
            layer.lazy_initialization(layer._k, layer._v)
            layer.set_length(src.length)
        return view

    def set_length(self, length: int) -> None:
        for layer in self.layers:
            layer.set_length(length)


def num_layers(lm: torch.nn.Module) -> int:
    cfg = lm.config
    return int(getattr(cfg, "num_hidden_layers", None) or cfg.get_text_config().num_hidden_layers)


def cache_kwarg(module: torch.nn.Module) -> str:
    """The KV-cache argument of ``module.forward``: ``cache`` (transformers >= 5.x) or ``past_key_values``."""
    fn = getattr(module, "forward", module)
    return "cache" if "cache" in inspect.signature(fn).parameters else "past_key_values"


LAST_POSITION_MODULES = (("self_attn", "q_proj"), ("self_attn", "o_proj"), ("mlp",))


@contextlib.contextmanager
def last_layer_at_last_position(lm: torch.nn.Module) -> Iterator[None]:
    """Within the block, the language model's last decoder layer runs its query projection, attention output
    projection and MLP on the last position of the sequence only; every other position gets zeros there.

    A prefill that reads one next token needs, from the last layer, the keys and values of every position (the
    cache: computed as before) but the output of the last position only. Llama's last layer on the other
    positions is pure waste: with hidden size *d* and MLP size *m*, ``2d² + 3dm`` of its ``4d² + 3dm``
    multiply-adds per token, i.e. 1/L of a prefill's projection and MLP work (``mid`` perf shape: 10 %; 7B:
    2.6 %). Zero queries give those positions a uniform attention whose (discarded) result costs one attention
    pass; the last position computes exactly the same products as before (in a one-row matrix product instead of
    a many-row one, so its float32 rounding may differ in the last bit).

    The modules keep their place (their ``forward`` is shadowed on the instance and restored after, as in
    :func:`bench.models.families.llava.only_used_vision_layers`), so LoRA wrappers and hooks still run. Applies
    to language models with a ``layers`` list whose last layer has ``self_attn.q_proj``, ``self_attn.o_proj``
    and ``mlp`` (Llama, Mistral, Qwen2, Vicuna); others run whole. A single-position call (a decode step) is
    untouched."""
    layers = getattr(lm, "layers", None)
    mods = []
    if isinstance(layers, torch.nn.ModuleList) and len(layers):
        for path in LAST_POSITION_MODULES:
            mod = layers[-1]
            for name in path:
                mod = getattr(mod, name, None)
            mods.append(mod)
    if not mods or not all(isinstance(m, torch.nn.Module) for m in mods):
        yield
        return
    for mod in mods:
        mod.forward = _at_last_position(mod.forward)
    try:
        yield
    finally:
        for mod in mods:
            del mod.forward


def _at_last_position(forward):
    def last_position_forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if x.shape[-2] == 1:
            return forward(x, *args, **kwargs)
        y = forward(x[..., -1:, :], *args, **kwargs)
        out = y.new_zeros(*x.shape[:-1], y.shape[-1])
        out[..., -1:, :] = y
        return out
    return last_position_forward


class LanguageModel:
    """The pieces of a (possibly peft-wrapped) checkpoint one decode step needs, looked up once."""

    packed: PackedLinears | None = None  # the packing in force inside packed_decode

    def __init__(self, model: torch.nn.Module, family: ModelFamily):
        self.model, self.family = model, family
        self.lm = family.language_model(model)
        self.embed = family.input_embeddings(model)
        self.head = family.lm_head(model)
        self.image_token_id = int(unwrap(model).config.image_token_id)
        self.cache_kw = cache_kwarg(self.lm)
        self.attn = attention_implementation(self.lm)
        self.dtype = self.embed.weight.dtype

    def new_cache(self, capacity: int, rows: int | None = None) -> GrowingCache:
        """An empty cache of ``capacity`` tokens per row; with ``rows``, its buffers allocated now."""
        cache = GrowingCache(num_layers(self.lm), capacity)
        if rows is not None:
            heads, head_dim = self.kv_heads_and_dim()
            cache.allocate(rows, heads, head_dim, self.dtype, self.embed.weight.device)
        return cache

    def kv_heads_and_dim(self) -> tuple[int, int]:
        """Key/value heads and head size of the language model's attention (from its config)."""
        cfg = self.lm.config
        heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        return int(heads), int(head_dim)

    def supports_block_masks(self) -> bool:
        """Whether a custom 4-D mask reaches the attention as given (sdpa / eager; not flash-attention)."""
        return self.attn in BLOCK_MASK_ATTENTION

    def block_mask(self, allowed: torch.Tensor) -> torch.Tensor:
        """``allowed`` [rows, q, k] (True = may attend) as the 4-D mask of this attention implementation:
        boolean for sdpa, additive (0 / dtype min) for eager."""
        return attention_mask(allowed, self.attn, self.dtype)

    def image_features(self, pixels: torch.Tensor, extra: dict) -> list[torch.Tensor]:
        """Vision tower + projector on N distinct images: one [tokens, hidden] tensor per image."""
        vt = self.family.vision_tower(self.model)
        dtype = next(vt.parameters()).dtype
        feats = self.family.image_features(self.model, pixels.to(dtype), extra)
        return list(feats)

    def embed_ids(self, ids: torch.Tensor, features: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Token embeddings of ``ids`` [rows, L]; the image-token positions of row r take ``features[r]`` in
        order (the caller passes one feature tensor per row, each exactly the row's image-token count)."""
        is_image = ids == self.image_token_id
        embeds = self.embed(ids.masked_fill(is_image, 0))
        if features:
            flat = torch.cat(features).to(embeds.dtype)
            if int(is_image.sum()) != flat.shape[0]:
                raise BenchError(f"image-token mismatch: the prompts hold {int(is_image.sum())} image tokens, the"
                                 f" vision tower gave {flat.shape[0]} features")
            embeds = embeds.masked_scatter(is_image.unsqueeze(-1), flat)
        return embeds

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor,
                cache: GrowingCache, last_only: bool = False) -> torch.Tensor:
        """Last hidden states [rows, L, D] of the language model; ``cache`` is updated in place.

        ``last_only``: only the hidden state at the last position is wanted (a prefill whose next token is read
        there): the last decoder layer computes its query, output projection and MLP at that position only
        (:func:`last_layer_at_last_position`); the other positions' returned states are then meaningless, the
        cache is complete."""
        guard = last_layer_at_last_position(self.lm) if last_only else contextlib.nullcontext()
        with guard:
            out = self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True,
                          **{self.cache_kw: cache})
        return out.last_hidden_state

    @contextlib.contextmanager
    def packed_decode(self, rows: int) -> Iterator[PackedLinears | None]:
        """Decode steps of ``rows`` rows with the language model's and the head's linear weights packed once
        (:mod:`bench.eval.prepack`; CPU float32 only). Yields the packing — call ``set_rows`` when rows leave the
        batch — or None where packing does not apply (then nothing changes)."""
        modules = linear_modules(self.lm) + ([self.head] if is_plain_linear(self.head) else [])
        if self.packed is not None or not packable(modules, rows):
            yield None
            return
        packs = PackedLinears(modules, rows)
        self.packed = packs
        try:
            with packs.installed():
                yield packs
        finally:
            self.packed = None

    def next_tokens(self, hidden: torch.Tensor) -> torch.Tensor:
        """Greedy next token of each hidden state [..., D] (``lm_head`` on these positions only).

        On CPU the vocabulary is scored in slices of :data:`HEAD_SLICE` rows of the output embedding with a
        running maximum, instead of one ``[rows, vocab]`` logits matrix: each logit is the same dot product over
        the hidden size, but the slice's logits stay in the core's cache (``mid`` perf shape, 32 rows × 32064:
        20.6 → 15.5 ms per decode step on the 2-core CPU). Ties keep the lowest id, as ``argmax`` does. On CUDA
        one matmul is faster, and so is it on CPU with the head's weight packed (:meth:`packed_decode`:
        32 rows, 8.4 → 5.2 ms)."""
        weight, bias = self.head.weight, getattr(self.head, "bias", None)
        if (hidden.device.type != "cpu" or weight.shape[0] <= HEAD_SLICE or type(self.head) is not torch.nn.Linear
                or (self.packed is not None and self.packed.routes(self.head, hidden.numel() // hidden.shape[-1]))):
            return self.head(hidden).argmax(-1)
        best_val = best_idx = None
        for start in range(0, weight.shape[0], HEAD_SLICE):
            logits = torch.nn.functional.linear(hidden, weight[start:start + HEAD_SLICE],
                                                None if bias is None else bias[start:start + HEAD_SLICE])
            idx = logits.argmax(-1, keepdim=True)
            val = logits.gather(-1, idx).squeeze(-1)
            idx = idx.squeeze(-1) + start
            if best_val is None:
                best_val, best_idx = val, idx
            else:
                better = val > best_val  # strict: an equal later maximum keeps the earlier (lower) id
                best_val, best_idx = torch.where(better, val, best_val), torch.where(better, idx, best_idx)
        return best_idx
