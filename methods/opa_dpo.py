"""OPA-DPO — on-policy alignment before DPO (Yang et al., CVPR 2025, arXiv 2501.09695).

Notation: y_gt the dataset's answer, y_o the model's own rollout, y_r the expert's (GPT-4V) minimal
revision of y_o; v the image, ṽ the masked image; Δ_t(y) = log πθ(y_t|·) − log π_ref(y_t|·).

Stage 1 "opa" (``zhyang2226/OPA-DPO@db90180: opadpo/opa_train.py``, ``opa_models/opa_trainer.py``,
``run/train_opa.sh``): LoRA-SFT, next-token cross-entropy (mean over supervised tokens) on (query, v, y_gt)
and (query, v, y_r) — 2N examples (``Stage.expand``); lr 2e-5, cosine, warmup 3 %, 2 epochs, global batch
128 (4 per GPU × 8 accumulation × 4 GPUs; here 4 × 32), LoRA r 256 / α 512, dropout 0. We follow the seed in
putting LoRA on every linear layer, *including the CLIP vision tower and the projector*
(``find_all_linear_names`` without the multimodal exclusion; ``lora_vision``); stage chaining merges it.

Stage 2 "dpo" (``opadpo/dpo_models/dpo_trainer.py: dpo_loss, compute_policy_loss``,
``utils/data_utils_dpo.py: DataCollatorForCausalLM``), reference = the OPA model (the loop's stage chaining:
stage 2 starts from, and refers to, the merged stage-1 model), β 0.1:

    ℓ1 = DPO(y_gt|v ≻ y_o|v)                       weights 1
    ℓ2 = DPO(y_r|v  ≻ y_o|v)                       sentence-score weights: score 1→2.5, 2→2.0, 3→1.5, 4→1.0
    ℓ3 = DPO(y_gt|v ≻ y_gt|ṽ)                      weights 1
    ℓ4 = DPO(y_r|v  ≻ y_r|ṽ)                       error-type weights, both sides: image_recognition_error→3.0,
                                                   else 1.0
    A  = −log σ(r1 − δ) − log σ(−r2 + δ) − log σ(r3 − δ) − log σ(−r4 + δ),  r_k = β·Δ(chosen of pair k),
         unweighted; r3 = r1 and r4 = r2 (same sequences), so A = 2·[−log σ(r1 − δ) − log σ(−r2 + δ)]
    L  = c_std·ℓ1 + c_AI·ℓ2 + c_std·c_img·ℓ3 + c_AI·c_img·ℓ4 + c_anc·A,   c_std = c_AI = 1, c_img = 0.2,
         c_anc = 1, δ = 0                                     (``configs/llava/llava_dpo.yaml``)

with DPO(w ≻ l) = −log σ(β·[Σ_t s^w_t Δ_t(w) − Σ_t s^l_t Δ_t(l)]), mean over the batch (default,
``per_token_aligned=False``). Token weights: y_o and y_r are built sentence by sentence from the report, as
the seed's collator does — each copied (for y_o) or rewritten (for y_r) sentence tokenised on its own and
concatenated, then "Added" (weight 1) for y_r — so every token carries its sentence's weight by
construction (``Sequence.tokens``; the loss checks the loop's token ids against the pieces). ``</s>``:
in y_r it takes the previous token's weight (the seed's ``pad_eos``); in y_o its score weight is 0 (the seed
gives the rollout's end-of-sequence token no score: "we do not add eos to original generate responses").

The masked image ṽ (``mask_single_image``, method "random", ratio 0.3): on the normalised pixel tensor,
⌊0.3·H·W⌋ pixel positions (all channels) set to the tensor's mean; ``ImageVariant(space="pixel",
fixed=True)``, drawn per sample from (seed, sample id) and shared by policy and reference, so the reference
log-probs are cached.

Choices and deviations (methods.md §4, §7):
* **per-token form.** The seed's ``dpo_loss`` works element-wise on [batch, 896] per-token log-ratios —
  chosen and rejected aligned by *position index*, each padded position adding log 2, every term (and the
  anchor) a mean over batch × 896 positions. That compares unrelated tokens and scales the gradient with
  1/896; we read it as a quirk and default to the sequence form above (DPO's objective on sequence
  log-ratios with per-token weights). ``per_token_aligned=True`` gives the seed's form, positions padded to
  ``response_positions`` (896) or the longest response if longer.
* the anchor's signs follow the code: it pushes the revised response's reward *down* (flagged in
  methods.md; not changed).
* the mask is redrawn at every rollout (outer step) in the seed; ours is fixed per sample (cacheable
  reference) unless ``mask_per_epoch`` (then fresh per epoch, reference online).
* stage 2 trains a fresh LoRA (r 256 / α 512, language model only) on the merged OPA model; the seed keeps
  training the OPA adapter itself (vision tower and projector frozen). Same start point and reference,
  different parametrisation (a fresh LoRA starts at B = 0).
* OPA-SFT images: the seed leaves ``image_aspect_ratio`` at ``square`` for that step (resize + centre
  crop); we pad to square in both stages (identical for square images).
* DPO run length: ``total_epochs 4`` capped at 500 outer steps of 64 samples; lr 1e-6, global batch 32
  (2 per GPU × 4 GPUs × 4 accumulation; here 2 × 16). The 500-step cap only binds above 8 000 samples and is
  not modelled (set ``train.max_steps``).
* schedule unit (``train.scheduler_step_every``, default 2 = the seed): the seed steps its scheduler once per
  outer step of 64 samples, i.e. every 2 optimizer updates (``opadpo/dpo_models/rl_trainer.py``, ``step``
  lines 181–189; accelerator built with ``step_scheduler_with_optimizer=False``, ``opadpo_train.py`` line
  603; schedule length = outer steps, lines 215–225). So ``warmup_steps 5`` lasts 10 updates and the cosine
  decays as a staircase held for two updates. ``scheduler_step_every=1`` decays every update.
* gradient synchronisation (``train.sync_gradients``, default **True — a deliberate deviation**): the seed
  runs every backward inside ``accelerator.no_sync(policy)`` (``rl_trainer.py`` lines 155–162), so on its
  4-GPU DDP script the gradients are never all-reduced: each process updates its own copy on its own 8
  samples per update and only rank 0's adapter is saved (``dpo_trainer.py``, ``save_model`` lines 847–866)
  — the released model trained on a quarter of the samples, 8 per update, and three quarters of the compute
  was discarded. We judge that a bug and synchronise (global batch 32 per update). ``sync_gradients=False``
  reproduces the seed under ``accelerate launch`` (every backward in ``no_sync``, main process saves); on one
  process it changes nothing — there the seed's rank-0 run is a run with a quarter of the data at 8 per update.
* BOS in responses (``response_bos``, default True = the seed): the seed tokenises y_gt whole with the
  tokenizer's ``<s>`` in front (``utils/data_utils_dpo.py`` line 123), and y_o / y_r piece by piece, keeping
  ``<s>`` on the report's first entry only (lines 178–189), so all three responses start with ``<s>``, a scored
  token (with the first sentence's weights). It cancels between the two sides of ℓ1 and ℓ2 (same context,
  same weight) but not in ℓ3/ℓ4 (clean vs masked image) or the anchor. ``response_bos=False`` drops it.
* DPO-stage prompt (``prompt_format``, default ``"reference"`` = the seed, :func:`opa_prompt_ids`):
  ``"<s> {system} USER: <image> \\n{question} ASSISTANT: "`` (``DPO_Dataset``, lines 292–293 and 344): a
  literal ``<s>`` after the tokenizer's BOS, a space after the image, a trailing space after ``ASSISTANT:``.
  ``"vicuna_v1"`` uses the vicuna_v1 prompt of the OPA stage and of evaluation. The OPA-SFT stage always uses
  vicuna_v1 (not audited here).
* report parsing (:func:`bench.data.formats.load_opa`): the text after the last copied sentence stays in
  y_o (the seed drops it); scores outside 1–4 are load errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from bench.data.formats import OPA_ERROR_WEIGHT, OPA_SCORE_WEIGHT, opa_extra_from_pair
from bench.data.preference import PreferenceRecord
from bench.errors import BenchError, DataError
from bench.models.llava import IMAGE_PLACEHOLDER
from bench.registry import METHODS
from bench.train.config import TrainConfig
from bench.train.method import ImageVariant, LogProbs, Method, Sequence, Stage, StepInputs
from methods.dpo import reward_metrics

OPA_FIELDS = ("gt", "rollout", "revision", "sentences")


def mask_pixels(pixels: torch.Tensor, generator: torch.Generator, ratio: float = 0.3) -> torch.Tensor:
    """Set ⌊ratio·H·W⌋ pixel positions (all channels) of ``pixels`` [C, H, W] to the tensor's mean."""
    c, h, w = pixels.shape
    n = int(h * w * ratio)
    idx = torch.randperm(h * w, generator=generator)[:n]
    out = pixels.clone().reshape(c, -1)
    out[:, idx] = pixels.mean()
    return out.reshape(pixels.shape)


def masked_variant(ratio: float, per_epoch: bool) -> ImageVariant:
    return ImageVariant(f"masked_r{ratio}", transform=lambda x, g: mask_pixels(x, g, ratio), space="pixel",
                        fixed=not per_epoch)


# --------------------------------------------------------------------------------- sentence pieces
def _piece_ids(pre, text: str) -> list[int]:
    """Token ids of ``text`` as a response piece, tokenised the way the loop tokenises a response (without the
    tokens closing the assistant turn, which the loop appends: ``</s>``, or a chat template's end of turn)."""
    return list(pre.text_ids(text) if hasattr(pre, "text_ids") else pre.response_ids(text)[:-1])


def _bos(pre) -> list[int]:
    bos = pre.tokenizer.bos_token_id
    if bos is None:
        raise BenchError("opa-dpo: response_bos needs a tokenizer with a BOS token")
    return [bos]


def response_pieces(pre, rec: PreferenceRecord, side: str, bos: bool = False) -> tuple[list[int], list[float], list[float]]:
    """Token ids of y_o (``side="own"``) or y_r (``"rev"``) built sentence by sentence, and per-token
    score and error-type weights, each with one more entry for ``</s>``. With ``bos`` the first piece keeps
    the tokenizer's ``<s>`` in front, carrying that sentence's weights, as the seed's collator does: it
    tokenises every piece with BOS and strips it from all but the report's first entry (so when that entry is
    empty on this side, no piece keeps it)."""
    ids: list[int] = []
    score_w: list[float] = []
    error_w: list[float] = []
    key = "copied" if side == "own" else "rewritten"
    for n, s in enumerate(rec.extra.get("sentences") or []):
        text = (s.get(key) or "").strip()
        if not text:
            continue
        piece = (_bos(pre) if bos and n == 0 else []) + _piece_ids(pre, text)
        ids += piece
        score_w += [OPA_SCORE_WEIGHT.get(int(s["score"]), 1.0)] * len(piece)
        error_w += [OPA_ERROR_WEIGHT.get(s.get("error_type", "correct"), 1.0)] * len(piece)
    if side == "rev" and (rec.extra.get("added") or "").strip():
        piece = _piece_ids(pre, rec.extra["added"].strip())
        ids += piece
        score_w += [1.0] * len(piece)
        error_w += [1.0] * len(piece)
    if not ids:  # no usable report: the whole text, weight 1
        ids = (_bos(pre) if bos else []) + _piece_ids(pre, rec.extra["rollout" if side == "own" else "revision"])
        score_w, error_w = [1.0] * len(ids), [1.0] * len(ids)
    if side == "own":
        score_w.append(0.0)  # the seed gives y_o's </s> no score weight
        error_w.append(1.0)
    else:
        score_w.append(score_w[-1] if score_w else 1.0)  # pad_eos: </s> takes the last token's weight
        error_w.append(error_w[-1] if error_w else 1.0)
    return ids, score_w, error_w


def _gt(r: PreferenceRecord) -> str:
    return r.extra["gt"]


def _own(r: PreferenceRecord) -> str:
    return r.extra["rollout"]


def _rev(r: PreferenceRecord) -> str:
    return r.extra["revision"]


def opa_prompt_ids(pre, question: str, image: str | None = None) -> list[int]:
    """The seed's DPO-stage query (``utils/data_utils_dpo.py``: ``DPO_Dataset``, lines 292–293 and 344): the
    string ``"<s> {system} USER: <image> \\n{question} ASSISTANT: "`` — a literal ``<s>`` (which the tokenizer
    reads as BOS) after the tokenizer's own BOS (``add_special_tokens`` on: two BOS ids, inferred from the
    LLaMA tokenizer's behaviour), the image placeholder followed by a space (the seed writes ``"图 "`` and maps
    that token to the image), and a trailing space after ``ASSISTANT:``. The image placeholder expands to the
    model's image tokens as in the vicuna_v1 layout. A family whose prompt is not vicuna_v1 (no ``system``
    sentence or fixed image-token count on its preprocessor: LLaVA-NeXT, Qwen2-VL, InstructBLIP, MiniGPT-4) has no
    such seed string; it gets its own prompt (``pre.prompt_ids`` for the record's ``image``, whose size some
    families' image-token count depends on)."""
    if getattr(pre, "system", None) is None or not hasattr(pre, "num_image_tokens"):
        from bench.train.loop import image_size_of  # only for these families; the loop is loaded by then

        return pre.prompt_ids(question, image_size_of(image) if image else None)
    q = question.replace(IMAGE_PLACEHOLDER, "").lstrip("\n")
    before = f"<s> {pre.system} USER: "
    after = f" \n{q} ASSISTANT: "
    encode = lambda text: pre.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    return _bos(pre) + encode(before) + [pre.image_token_id] * pre.num_image_tokens + encode(after)


def opa_prompt_text(question: str, system: str) -> str:
    """The seed's DPO-stage query string with ``<image>`` for the image (what :func:`opa_prompt_ids` encodes)."""
    q = question.replace(IMAGE_PLACEHOLDER, "").lstrip("\n")
    return f"<s> {system} USER: {IMAGE_PLACEHOLDER} \n{q} ASSISTANT: "


@dataclass
class OpaDpoConfig:
    """Coefficients of ``configs/llava/llava_dpo.yaml``; loop settings of ``run/train_opa.sh`` (``sft``) and
    ``run/train_opa_dpo.sh`` (``train``). ``response_bos`` (True: responses start with ``<s>``),
    ``prompt_format`` (``"reference"`` | ``"vicuna_v1"``) and ``train.scheduler_step_every`` (2) reproduce the
    seed's run; ``train.sync_gradients`` True deviates from it on purpose (False = the seed's unsynchronised
    processes). See the module docstring for each, with the seed's lines."""

    beta: float = 0.1
    coef_standard: float = 1.0  # standard_pair_coef
    coef_ai: float = 1.0  # AI_pair_coef
    coef_image: float = 0.2  # CoPO_coef
    coef_anchor: float = 1.0  # Anchor_coef
    anchor_delta: float = 0.0  # Anchor_value
    mask_ratio: float = 0.3  # CoPO_mask_ratio
    mask_per_epoch: bool = False
    per_token_aligned: bool = False
    response_positions: int = 896  # response_len of the seed's collator (per_token_aligned only)
    response_bos: bool = True  # y_gt, y_o, y_r start with <s>, as the seed's collator tokenises them
    prompt_format: str = "reference"  # "reference": the seed's DPO query string; "vicuna_v1": the other stages'
    sft: TrainConfig = field(default_factory=lambda: TrainConfig(
        lr=2e-5, epochs=2, batch_size=4, grad_accum=32, warmup_ratio=0.03, max_length=2048, lora_r=256,
        lora_alpha=512, lora_dropout=0.0, lora_vision=True, train_projector=False))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        lr=1e-6, epochs=4, batch_size=2, grad_accum=16, warmup_steps=5, scheduler_step_every=2, max_length=2048,
        lora_r=256, lora_alpha=512, lora_dropout=0.0, train_projector=False, sync_gradients=True))


def sequences(cfg: OpaDpoConfig) -> list[Sequence]:
    """The five DPO-stage sequences; ``response_bos`` and ``prompt_format`` decide their tokens and prompt."""
    masked = masked_variant(cfg.mask_ratio, cfg.mask_per_epoch)
    bos = cfg.response_bos
    gt_tokens = (lambda r, pre: _bos(pre) + list(pre.response_ids(_gt(r))[:-1])) if bos else None
    own_tokens = lambda r, pre: response_pieces(pre, r, "own", bos)[0]  # noqa: E731
    rev_tokens = lambda r, pre: response_pieces(pre, r, "rev", bos)[0]  # noqa: E731
    if cfg.prompt_format not in ("reference", "vicuna_v1"):
        raise BenchError(f"opa-dpo: prompt_format must be 'reference' or 'vicuna_v1', not {cfg.prompt_format!r}")
    prompt = (lambda r, pre: opa_prompt_ids(pre, r.question, r.image)) if cfg.prompt_format == "reference" else None
    return [Sequence("gt", _gt, tokens=gt_tokens, prompt=prompt),
            Sequence("own", _own, tokens=own_tokens, prompt=prompt),
            Sequence("rev", _rev, tokens=rev_tokens, prompt=prompt),
            Sequence("gt_masked", _gt, image=masked, tokens=gt_tokens, prompt=prompt),
            Sequence("rev_masked", _rev, image=masked, tokens=rev_tokens, prompt=prompt)]


def token_weights(inputs: StepInputs, seq: str, kind: str, bos: bool = False) -> torch.Tensor:
    """[B, T] weights of sequence ``seq`` (``own``/``rev``/``rev_masked``), ``kind`` ``score`` or ``error``,
    aligned with ``inputs.policy[seq]`` (checked against its token ids)."""
    lp = inputs.policy[seq]
    side = "own" if seq == "own" else "rev"
    pre = inputs.require_context("opa-dpo token weights").pre
    out = torch.zeros_like(lp.logps)
    for i, rec in enumerate(inputs.records):
        ids, score_w, error_w = response_pieces(pre, rec, side, bos)
        n = int(lp.mask[i].sum())
        expected = ids + [pre.tokenizer.eos_token_id]
        if n != len(expected) or lp.tokens[i, :n].tolist() != expected:
            raise BenchError(f"opa-dpo: sample {rec.id} ({seq}): token weights do not line up with the sequence"
                             f" ({len(expected)} weights for {n} tokens)")
        out[i, :n] = torch.tensor(score_w if kind == "score" else error_w, dtype=out.dtype)
    return out


def pair_loss(policy: dict[str, LogProbs], ref: dict[str, LogProbs], chosen: str, rejected: str, beta: float,
              w_chosen: torch.Tensor | None = None, w_rejected: torch.Tensor | None = None,
              per_token_aligned: bool = False, positions: int = 0) -> torch.Tensor:
    """Weighted DPO of one pair, mean over the batch: sequence form (default), or the seed's per-token form
    (chosen and rejected aligned by position, mean over batch × max(``positions``, longest) positions)."""
    dc = (policy[chosen].logps - ref[chosen].logps) * policy[chosen].mask
    dr = (policy[rejected].logps - ref[rejected].logps) * policy[rejected].mask
    if w_chosen is not None:
        dc = dc * w_chosen
    if w_rejected is not None:
        dr = dr * w_rejected
    if not per_token_aligned:
        return -F.logsigmoid(beta * (dc.sum(-1) - dr.sum(-1))).mean()
    width = max(dc.shape[1], dr.shape[1], positions)
    dc, dr = F.pad(dc, (0, width - dc.shape[1])), F.pad(dr, (0, width - dr.shape[1]))
    return -F.logsigmoid(beta * (dc - dr)).mean()


def anchor_loss(policy: dict[str, LogProbs], ref: dict[str, LogProbs], beta: float, delta: float,
                per_token_aligned: bool = False, positions: int = 0) -> torch.Tensor:
    """AncPO with mDPO's form: 2·[−log σ(β·Δ(y_gt) − δ) − log σ(−β·Δ(y_r) + δ)] (r3 = r1, r4 = r2)."""
    dg = (policy["gt"].logps - ref["gt"].logps) * policy["gt"].mask
    dv = (policy["rev"].logps - ref["rev"].logps) * policy["rev"].mask
    if not per_token_aligned:
        r1, r2 = beta * dg.sum(-1), beta * dv.sum(-1)
        return 2 * (-F.logsigmoid(r1 - delta) - F.logsigmoid(-r2 + delta)).mean()
    width = max(dg.shape[1], dv.shape[1], positions)
    r1, r2 = beta * F.pad(dg, (0, width - dg.shape[1])), beta * F.pad(dv, (0, width - dv.shape[1]))
    return 2 * (-F.logsigmoid(r1 - delta) - F.logsigmoid(-r2 + delta)).mean()


def opa_dpo_loss(inputs: StepInputs, cfg: OpaDpoConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The five-term loss of the module docstring."""
    p, r = inputs.policy, inputs.reference
    kw = {"per_token_aligned": cfg.per_token_aligned, "positions": cfg.response_positions}
    l1 = pair_loss(p, r, "gt", "own", cfg.beta, **kw)
    bos = cfg.response_bos
    l2 = pair_loss(p, r, "rev", "own", cfg.beta, token_weights(inputs, "rev", "score", bos),
                   token_weights(inputs, "own", "score", bos), **kw)
    l3 = pair_loss(p, r, "gt", "gt_masked", cfg.beta, **kw)
    l4 = pair_loss(p, r, "rev", "rev_masked", cfg.beta, token_weights(inputs, "rev", "error", bos),
                   token_weights(inputs, "rev_masked", "error", bos), **kw)
    anchor = anchor_loss(p, r, cfg.beta, cfg.anchor_delta, **kw)
    loss = (cfg.coef_standard * l1 + cfg.coef_ai * l2 + cfg.coef_standard * cfg.coef_image * l3
            + cfg.coef_ai * cfg.coef_image * l4 + cfg.coef_anchor * anchor)
    reward = {k: cfg.beta * ((p[k].logps - r[k].logps) * p[k].mask).sum(-1).detach() for k in ("gt", "own", "rev")}
    metrics = reward_metrics(reward["gt"], reward["own"])
    metrics["rewards/revision"] = reward["rev"].mean()
    for name, v in (("gt_own", l1), ("rev_own", l2), ("gt_masked", l3), ("rev_masked", l4), ("anchor", anchor)):
        metrics[f"loss/{name}"] = v.detach()
    return loss, metrics


def sft_loss(inputs: StepInputs, cfg: OpaDpoConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Token-level cross-entropy, mean over the micro-batch's supervised tokens (HF causal-LM loss)."""
    lp = inputs.policy["target"]
    nll = -(lp.logps * lp.mask).sum() / lp.mask.sum().clamp(min=1)
    return nll, {"sft/nll": nll.detach()}


def sft_examples(rec: PreferenceRecord) -> list[PreferenceRecord]:
    """Each sample gives two SFT examples: (query, image, y_gt) and (query, image, y_r)."""
    return [PreferenceRecord(f"{rec.id}/gt", rec.image, rec.question, rec.extra["gt"], rec.extra["gt"]),
            PreferenceRecord(f"{rec.id}/rev", rec.image, rec.question, rec.extra["revision"], rec.extra["revision"])]


@METHODS.register
class OpaDpoMethod(Method):
    """OPA LoRA-SFT on y_gt + y_r, then the five-term DPO (own / revised / masked-image / anchor)."""

    name = "opa-dpo"
    data_pipeline = "opa-dpo"
    version = "2"
    description = "LoRA-SFT on gt + expert revisions (OPA), then DPO with sentence weights, masked images, anchor"
    config_cls = OpaDpoConfig

    def stages(self, cfg: OpaDpoConfig) -> list[Stage]:
        return [Stage("opa", [Sequence("target", lambda r: r.chosen)], sft_loss, kind="sft", config_key="sft",
                      expand=sft_examples),
                Stage("dpo", sequences(cfg), opa_dpo_loss)]

    def prepare_records(self, records: list[PreferenceRecord]) -> list[PreferenceRecord]:
        """Records without any OPA field (plain pairs such as the bundled synthetic data) get them derived by
        :func:`bench.data.formats.opa_extra_from_pair`; records with some but not all are an error."""
        for rec in records:
            have = [k for k in OPA_FIELDS if k in rec.extra]
            if not have:
                rec.extra.update(opa_extra_from_pair(rec))
            elif len(have) < len(OPA_FIELDS):
                missing = sorted(set(OPA_FIELDS) - set(have))
                raise DataError(f"<records> sample {rec.id}", f"OPA-DPO fields missing from extra: {missing}",
                                field="extra")
        return records
