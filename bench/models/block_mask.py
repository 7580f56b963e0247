"""Block-causal attention masks: several sequences packed in one row after a prefix they share.

A row holds segment ids per token: 0 for the shared prefix (an image + prompt), 1, 2, … for the sequences that
follow it (questions in evaluation, the chosen and rejected responses in training). A query may attend a key
when the key is not later than the query (causal) and lies in the prefix or in the query's own segment, so each
sequence sees exactly the tokens it would see alone in its own row:

    allowed[r, t, u] = (u ≤ t) ∧ (seg[r, u] = 0 ∨ seg[r, u] = seg[r, t])

Used by the evaluation engine's packed path (:mod:`bench.eval.packed`, :mod:`bench.eval.kvcache`) and by the
training loop's shared prefix (:mod:`bench.train.shared_prefix`). A 4-D mask reaches the attention kernel as
given only with transformers' ``sdpa`` (boolean, True = attend) and ``eager`` (additive: 0 or the dtype's
minimum) implementations (``masking_utils``: a 4-D mask is used as passed); flash-attention drops it.
"""

from __future__ import annotations

import torch

BLOCK_MASK_ATTENTION = ("sdpa", "eager")  # implementations that apply a custom 4-D mask as given


def attention_implementation(language_model: torch.nn.Module) -> str:
    """The attention implementation of a language model (``config._attn_implementation``; ``eager`` when
    unset)."""
    return getattr(language_model.config, "_attn_implementation", None) or "eager"


def segments_allowed(seg: torch.Tensor) -> torch.Tensor:
    """``seg`` [R, L] segment ids → [R, L, L] True where query t may attend key u (see the module docstring)."""
    length = seg.shape[1]
    causal = torch.ones((length, length), dtype=torch.bool, device=seg.device).tril_()
    same = (seg[:, None, :] == seg[:, :, None]) | (seg[:, None, :] == 0)
    return same & causal


def attention_mask(allowed: torch.Tensor, attn: str, dtype: torch.dtype) -> torch.Tensor:
    """``allowed`` [R, q, k] as the 4-D mask [R, 1, q, k] of attention implementation ``attn``: boolean for
    ``sdpa``, additive (0 / ``dtype`` minimum) for ``eager``."""
    mask = allowed[:, None]
    if attn == "sdpa":
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, torch.finfo(dtype).min)
