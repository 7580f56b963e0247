"""Chosen and rejected in one row: the prompt + image prefix of a pair computed once (``TrainConfig.share_prefix``).

A preference pair's sequences start with the same tokens — system sentence, ``USER:``, the image tokens and the
question (≈ 290 tokens at ``perf --shape mid``: 256 image + 33 prompt) — and differ only in the response. The padded
path (:func:`bench.train.forward.sequence_logps`) runs that prefix through the language model once per sequence.
With ``share_prefix`` the loop packs the sequences of one record that use **the same image input and the same
prompt ids** into one row::

    row:        [ prefix (k tokens) | response_1 (m_1) | response_2 (m_2) | … | pad … ]
    positions:    0 … k-1             k … k+m_1-1        k … k+m_2-1
    response_j attends: the prefix and the earlier tokens of response_j only (block-causal 4-D mask)

Rows of a forward are right-padded to the longest; padding attends only to the prefix and earlier padding (never
a fully masked query, so no NaN), and nothing reads it.

**Which tokens are scored.** In its own row, sequence s's supervised token at index u (``labels[u] != -100``) is
predicted by the hidden state at u − 1. In the packed row an own-row index t maps to t when t < k (the prefix) and
to a_s + (t − k) otherwise, a_s being where response s starts; so the first response token reads the hidden state
of the prefix's last token (position k − 1, shared by every response of the row) and the others read their own
segment. ``lm_head`` runs on these positions only, in float32 chunks (:func:`bench.train.forward.head_logps`).

**Why exact.** Every hidden state a response token sees is computed from the same token ids, the same positions
(they restart at k after the prefix) and the same keys as in its own padded row: the block mask admits exactly the
prefix and the response's own earlier tokens, and the prefix tokens attend only to the prefix in both layouts.
Only the attention kernel's reduction layout differs (masked keys contribute exact zeros), so per-sequence summed
log-probs agree with the padded path to float rounding (tests: within 1e-5 in float32). Gradients: the loss is a
function of every response's log-probs; in the packed row the prefix activations receive the sum of the
gradients the responses send them, which is what the two copies of the prefix receive separately in two rows —
the parameter gradients are the same sum (``tests/test_train_shared_prefix.py``: LoRA gradients allclose).

**When sequences share a row.** Per record: same image input (same variant → the same pixels, from
``Encoded.image_index``) and identical prompt ids (the tokens before ``prompt_len``; all of them unsupervised). A
sequence with no partner — POVID's noised-image chosen, a response after another prompt layout — gets a row of its
own ([prompt, response], the padded row's tokens under a mask equal to the causal one). When no record has two
sequences to share (POVID's extra forwards run one sequence), the padded path runs unchanged.

**When the padded path runs instead** (decided per model, with one warning naming the reason): a family that
declares ``prefix_sharing() = False`` (Qwen2-VL: its 3-D M-RoPE positions are not plain offsets after the prefix)
or ``fast_paths = False`` (InstructBLIP: image features per (image, question)); an attention implementation that
does not take a custom 4-D mask as given (only ``sdpa`` and ``eager`` do; flash-attention ignores it).

The layout is the one :mod:`bench.eval.packed` uses for several questions per image (prefix sharing /
tree attention in transformers' 4-D mask convention, ``masking_utils``: a 4-D mask is used as given), written
again here because training sits below evaluation in the module map.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import torch

from bench.models.block_mask import BLOCK_MASK_ATTENTION, attention_implementation, attention_mask, segments_allowed
from bench.models.family import family_of
from bench.models.llava import IGNORE_INDEX
from bench.train.forward import EncodedBatch, head_logps, hidden_states, image_features, llava_of

_warned: set[str] = set()


def unsupported_reason(llava: torch.nn.Module) -> str | None:
    """Why this model cannot run packed rows (None when it can): family declarations and attention kernel."""
    family = family_of(llava)
    if not family.fast_paths:
        return f"the {family.name} family's image features depend on the question (fast_paths = False)"
    if not family.prefix_sharing():
        return f"the {family.name} family's positions are not plain offsets after the prefix"
    attn = attention_implementation(family.language_model(llava))
    if attn not in BLOCK_MASK_ATTENTION:
        return f"attention implementation {attn!r} does not take a custom 4-D mask (sdpa or eager do)"
    return None


def _warn_once(reason: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(f"train.share_prefix: {reason}; the padded path runs instead", stacklevel=3)


def prompt_length(seq: dict) -> int:
    """Tokens before the response of an encoded sequence: ``prompt_len`` when the encoder gives it, else the index
    of the first supervised label."""
    if "prompt_len" in seq:
        return int(seq["prompt_len"])
    labels = seq["labels"]
    return next((u for u, v in enumerate(labels) if v != IGNORE_INDEX), len(labels))


@dataclass
class PackedRows:
    """Packed rows of one forward and where every sequence's supervised tokens are read from.

    ``batch``: ids, 0/1 padding mask and the image index of each packed row (labels unused, all -100);
    ``positions`` and ``segments`` [P, W] (segment 0 prefix, j ≥ 1 the j-th response, -1 padding); per sequence
    (in ``Encoded.keys`` order): ``row`` its packed row, ``sources`` the hidden-state positions that predict its
    supervised tokens and ``targets`` those tokens (own-row order)."""

    batch: EncodedBatch
    positions: torch.Tensor
    segments: torch.Tensor
    row: list[int]
    sources: list[list[int]]
    targets: list[list[int]]

    @property
    def shared_rows(self) -> int:
        """Rows holding two or more sequences."""
        return int(((self.segments.max(1).values) >= 2).sum())

    def to(self, device: str | torch.device) -> "PackedRows":
        b = self.batch
        batch = EncodedBatch(b.input_ids.to(device), b.attention_mask.to(device), b.labels.to(device),
                             b.image_index.to(device))
        return replace(self, batch=batch, positions=self.positions.to(device), segments=self.segments.to(device))

    def allowed(self) -> torch.Tensor:
        """[P, W, W] True where query t may attend key u: u ≤ t and (u in the prefix or in t's own segment)."""
        return segments_allowed(self.segments)

    def logps(self, llava: torch.nn.Module, hidden: torch.Tensor, seqs: list[int] | None = None,
              alt_targets: list[torch.Tensor] | None = None
              ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """(logps, targets, argmax) 1-D per sequence (``seqs``: which, default all) from the packed hidden states
        [P, W, D]; ``alt_targets`` scores other ids at the same positions, as in ``supervised_logps``."""
        seqs = list(range(len(self.row))) if seqs is None else seqs
        device = hidden.device
        rows = torch.tensor([self.row[s] for s in seqs for _ in self.sources[s]], dtype=torch.long, device=device)
        pos = torch.tensor([p for s in seqs for p in self.sources[s]], dtype=torch.long, device=device)
        if alt_targets is None:
            tgt = torch.tensor([t for s in seqs for t in self.targets[s]], dtype=torch.long, device=device)
        else:
            tgt = torch.cat([t.reshape(-1) for t in alt_targets]).to(device=device, dtype=torch.long)
        flat, flat_arg = head_logps(llava, hidden[rows, pos], tgt)
        counts = [len(self.sources[s]) for s in seqs]
        return list(flat.split(counts)), list(tgt.split(counts)), list(flat_arg.split(counts))


def plan_rows(seqs: list[dict], image_index: list[int], pad_id: int) -> PackedRows | None:
    """Pack the encoded sequences (``Encoded.seqs`` with their ``image_index``): sequences with the same image
    input and identical prompt ids share one row, in order of first appearance; None when no two sequences share
    (the caller then runs the padded path)."""
    groups: dict[tuple, list[int]] = {}
    prefix_len: list[int] = []
    for s, seq in enumerate(seqs):
        k = prompt_length(seq)
        ids, labels = seq["input_ids"], seq["labels"]
        shareable = 0 < k < len(ids) and all(v == IGNORE_INDEX for v in labels[:k])
        key = (image_index[s], tuple(ids[:k])) if shareable else ("alone", s)
        groups.setdefault(key, []).append(s)
        prefix_len.append(k if shareable else len(ids) - 1)
    if all(len(members) < 2 for members in groups.values()):
        return None
    layouts = []  # per packed row: (prefix ids, image index, [(sequence, response ids)])
    for members in groups.values():
        k = prefix_len[members[0]]
        first = seqs[members[0]]["input_ids"]
        layouts.append((first[:k], image_index[members[0]], [(s, seqs[s]["input_ids"][k:]) for s in members]))
    width = max(len(p) + sum(len(r) for _, r in parts) for p, _, parts in layouts)
    n = len(layouts)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    att = torch.zeros((n, width), dtype=torch.long)
    pos = torch.zeros((n, width), dtype=torch.long)
    seg = torch.full((n, width), -1, dtype=torch.long)
    row, sources, targets = [0] * len(seqs), [[] for _ in seqs], [[] for _ in seqs]
    for r, (prefix, _, parts) in enumerate(layouts):
        k = len(prefix)
        ids[r, :k] = torch.tensor(prefix)
        pos[r, :k] = torch.arange(k)
        seg[r, :k] = 0
        at = k
        for j, (s, resp) in enumerate(parts):
            m = len(resp)
            ids[r, at:at + m] = torch.tensor(resp)
            pos[r, at:at + m] = torch.arange(k, k + m)
            seg[r, at:at + m] = j + 1
            labels = seqs[s]["labels"]
            row[s] = r
            for u in range(1, len(labels)):  # own-row hidden state u-1 predicts label u
                if labels[u] != IGNORE_INDEX:
                    t = u - 1
                    sources[s].append(t if t < k else at + t - k)
                    targets[s].append(labels[u])
            at += m
        att[r, :at] = 1
        pos[r, at:] = torch.arange(width - at) + at  # padding: any position (it attends only to itself and the prefix)
    image_rows = torch.tensor([img for _, img, _ in layouts], dtype=torch.long)
    batch = EncodedBatch(ids, att, torch.full_like(ids, IGNORE_INDEX), image_rows)
    return PackedRows(batch, pos, seg, row, sources, targets)


def plan_for(model: torch.nn.Module, seqs: list[dict], image_index: list[int], pad_id: int) -> PackedRows | None:
    """:func:`plan_rows` when ``model`` can run packed rows; None (and one warning per reason) when it cannot."""
    reason = unsupported_reason(llava_of(model))
    if reason is not None:
        _warn_once(reason)
        return None
    return plan_rows(seqs, image_index, pad_id)


def packed_sequence_logps(model: torch.nn.Module, packed: PackedRows, pixel_values: torch.Tensor,
                          alt_targets: list[torch.Tensor] | None = None,
                          image_extra: dict[str, torch.Tensor] | None = None
                          ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """Vision once per image, language model once per packed row, ``lm_head`` on supervised positions only.

    Returns (logps, targets, argmax) per sequence and the packed last hidden states [P, W, D] (for
    :meth:`PackedRows.logps` on other targets)."""
    llava = llava_of(model)
    family = family_of(llava)
    dtype = next(family.vision_tower(llava).parameters()).dtype
    feats = image_features(llava, pixel_values.to(dtype), image_extra)
    mask = attention_mask(packed.allowed(), attention_implementation(family.language_model(llava)),
                          family.input_embeddings(llava).weight.dtype)
    hidden = hidden_states(llava, packed.batch, feats, image_extra, block_mask=mask, position_ids=packed.positions)
    lp, tg, am = packed.logps(llava, hidden, alt_targets=alt_targets)
    return lp, tg, am, hidden
