"""Per-token log-probabilities of many (response, image) sequences in one forward.

Speed levers (issue 4):
* the vision tower runs once per *distinct* image of the micro-batch; its features are scattered
  into every sequence that uses that image (chosen and rejected share them);
* ``lm_head`` is applied only at supervised positions, so the full-vocabulary logits of the
  prompt and the 576 image positions are never materialised; log-softmax runs in float32 on
  chunks of at most ``chunk_tokens`` positions.
* (``TrainConfig.share_prefix``, off by default) the sequences of a pair that share image and prompt run as one
  packed row, the prefix computed once: :mod:`bench.train.shared_prefix` builds the rows and calls
  :func:`hidden_states` with its block mask and positions, then :func:`head_logps` at the supervised positions.

Not used: padding-free packing of several sequences into one row (TRL's ``padding_free``). With ``sdpa`` or
``eager`` the row's block-diagonal mask still makes the attention dense over the whole packed row: at the ``mid``
perf shape, forward + backward of 8 sequences of 289 prompt + 30–120 response tokens took 1.9 s padded (3272
tokens) and 2.5–3.7 s packed (2892 tokens; mask from the positions or a 4-D mask) on the 2-core CPU. It pays only
with variable-length attention kernels (flash-attention), which nothing here can run or test.

Guards: a sequence whose image-token count differs from the features supplied raises, instead of
the silent prompt/feature mismatch users hit in TRL.

Everything model-specific (where the vision tower is, how it is run, extra inputs such as ``image_sizes``,
Qwen2-VL's 3-D positions) comes from the checkpoint's family (:mod:`bench.models.family`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.errors import BenchError
from bench.models.family import family_of, unwrap
from bench.models.llava import IGNORE_INDEX


@dataclass
class EncodedBatch:
    input_ids: torch.Tensor  # [N, L] right-padded
    attention_mask: torch.Tensor  # [N, L]
    labels: torch.Tensor  # [N, L] (-100 outside responses)
    image_index: torch.Tensor  # [N] index into the pixel batch


def pad_batch(seqs: list[dict], pad_id: int, image_index: list[int]) -> EncodedBatch:
    length = max(len(s["input_ids"]) for s in seqs)
    n = len(seqs)
    ids = torch.full((n, length), pad_id, dtype=torch.long)
    lab = torch.full((n, length), IGNORE_INDEX, dtype=torch.long)
    att = torch.zeros((n, length), dtype=torch.long)
    for i, s in enumerate(seqs):
        k = len(s["input_ids"])
        ids[i, :k] = torch.tensor(s["input_ids"])
        lab[i, :k] = torch.tensor(s["labels"])
        att[i, :k] = 1
    return EncodedBatch(ids, att, lab, torch.tensor(image_index, dtype=torch.long))


llava_of = unwrap  # the transformers model inside a PeftModel (kept name: tests and methods use it)


def image_features(llava: torch.nn.Module, pixel_values: torch.Tensor,
                   extra: dict[str, torch.Tensor] | None = None) -> torch.Tensor | list[torch.Tensor]:
    """The family's vision tower + projector on N distinct images ([N, T, D] or N tensors [T_i, D])."""
    return family_of(llava).image_features(llava, pixel_values, extra or {})


def hidden_states(llava: torch.nn.Module, batch: EncodedBatch, feats: torch.Tensor | list[torch.Tensor],
                  extra: dict[str, torch.Tensor] | None = None, *, block_mask: torch.Tensor | None = None,
                  position_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Last hidden states [N, L, D] of the language model with image features scattered in.

    ``block_mask`` (a 4-D mask in the attention implementation's form) and ``position_ids`` [N, L] replace the
    right-padded batch's 2-D mask and the family's positions (packed rows, :mod:`bench.train.shared_prefix`)."""
    family = family_of(llava)
    image_token_id = llava.config.image_token_id
    ids = batch.input_ids
    embed = family.input_embeddings(llava)
    embeds = embed(ids.masked_fill(ids == image_token_id, 0))
    is_image = ids == image_token_id
    per_seq = is_image.sum(1)
    if isinstance(feats, torch.Tensor):  # every image gives the same number of tokens
        want = torch.full_like(per_seq, feats.shape[1])
    else:
        want = torch.tensor([feats[int(j)].shape[0] for j in batch.image_index], device=per_seq.device)
    if not torch.all(per_seq == want):
        bad = [int(i) for i in torch.nonzero(per_seq != want).flatten()]
        raise BenchError(
            f"image-token mismatch: sequences {bad} hold {per_seq[bad].tolist()} image tokens but the vision tower"
            f" gives {want[bad].tolist()} features for their images (truncated or duplicated <image> placeholder?)"
        )
    if isinstance(feats, torch.Tensor):
        scattered = feats[batch.image_index].reshape(-1, feats.shape[-1]).to(embeds.dtype)
    else:
        scattered = torch.cat([feats[int(j)] for j in batch.image_index]).to(embeds.dtype)
    embeds = embeds.masked_scatter(is_image.unsqueeze(-1), scattered)
    if block_mask is not None:
        out = family.language_model(llava)(inputs_embeds=embeds, attention_mask=block_mask, position_ids=position_ids)
        return out.last_hidden_state
    more = family.language_model_inputs(llava, ids, batch.attention_mask, extra or {}, batch.image_index)
    out = family.language_model(llava)(inputs_embeds=embeds, attention_mask=batch.attention_mask, **more)
    return out.last_hidden_state


def supervised_logps(
    llava: torch.nn.Module, hidden: torch.Tensor, labels: torch.Tensor, chunk_tokens: int = 4096,
    alt_targets: list[torch.Tensor] | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Log-probs and argmax of the supervised next tokens, per sequence (1-D tensors).

    Position t predicts label t+1 (the usual shift). Returns (logps, targets, argmax) lists.
    ``alt_targets`` (one 1-D tensor per sequence, one id per supervised position) scores other
    tokens at the same positions under the same context (POVID's arg-max-under-noise sequence).
    """
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    h = hidden[:, :-1][mask]  # [M, D]
    tgt = targets[mask] if alt_targets is None else torch.cat(alt_targets).to(targets.device)
    flat, flat_arg = head_logps(llava, h, tgt, chunk_tokens)
    counts = mask.sum(1).tolist()
    return list(flat.split(counts)), list(tgt.split(counts)), list(flat_arg.split(counts))


def head_logps(llava: torch.nn.Module, h: torch.Tensor, tgt: torch.Tensor,
               chunk_tokens: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """``lm_head`` on the hidden states ``h`` [M, D] only: float32 log-probs of the targets ``tgt`` [M] and the
    arg-max ids, in chunks of at most ``chunk_tokens`` positions (full-vocabulary logits of one chunk at a time)."""
    logps, argmax = [], []
    lm_head = family_of(llava).lm_head(llava)
    for start in range(0, h.shape[0], chunk_tokens):
        logits = lm_head(h[start : start + chunk_tokens]).float()
        lp = F.log_softmax(logits, dim=-1)
        logps.append(lp.gather(-1, tgt[start : start + chunk_tokens, None]).squeeze(-1))
        argmax.append(logits.argmax(-1))
    flat = torch.cat(logps) if logps else h.new_zeros(0)
    flat_arg = torch.cat(argmax) if argmax else tgt.new_zeros(0)
    return flat, flat_arg


def sequence_logps(
    model: torch.nn.Module, batch: EncodedBatch, pixel_values: torch.Tensor,
    alt_targets: list[torch.Tensor] | None = None, return_hidden: bool = False,
    image_extra: dict[str, torch.Tensor] | None = None,
):
    """Vision once per image, language model once per sequence, lm_head on response tokens only.

    Returns (logps, targets, argmax) lists, plus the last hidden states [N, L, D] when
    ``return_hidden`` (to score other tokens at the same positions later, see ``supervised_logps``).
    """
    llava = llava_of(model)
    dtype = next(family_of(llava).vision_tower(llava).parameters()).dtype
    feats = image_features(llava, pixel_values.to(dtype), image_extra)
    hidden = hidden_states(llava, batch, feats, image_extra)
    out = supervised_logps(llava, hidden, batch.labels, alt_targets=alt_targets)
    return (*out, hidden) if return_hidden else out
