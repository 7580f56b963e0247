"""OPA-DPO — on-policy alignment before DPO (Yang et al., CVPR 2025, arXiv 2501.09695).

Notation: y_gt ground-truth answer, y_o the model's own rollout, y_r the expert's minimal revision of
y_o; v the image, ṽ the masked image (30 % of pixel positions of the normalised tensor set to its mean,
drawn once per sample — ``mask_single_image``, method "random"). Δ_t(y) = log πθ(y_t) − log π_ref(y_t).

Stage 1 "opa" (``opadpo/opa_train.py``): LoRA-SFT, cross-entropy on y_gt and y_r (2N examples).
Stage 2 "dpo" (``opadpo/dpo_models/dpo_trainer.py: compute_policy_loss``), reference = the OPA model:

    ℓ1 = DPO(y_gt | v  ≻  y_o | v)
    ℓ2 = DPO(y_r | v  ≻  y_o | v)   with per-token sentence weights s (score 1→2.5, 2→2.0, 3→1.5, 4→1.0)
    ℓ3 = DPO(y_gt | v ≻  y_gt | ṽ)
    ℓ4 = DPO(y_r | v  ≻  y_r | ṽ)   with per-token error-type weights (image_recognition_error 3.0, else 1.0)
    A  = −log σ(r1) − log σ(−r2) − log σ(r3) − log σ(−r4),  r_k = β·Δ(chosen of pair k) (unweighted)
    L  = ℓ1 + ℓ2 + 0.2·ℓ3 + 0.2·ℓ4 + A

Choices (methods.md §4.1, §7): the seed averages a *position-aligned per-token* loss over batch × 896
positions (chosen and rejected aligned by index, padding adding log 2). We default to the intended
sequence form — DPO on weighted sums Σ_t w_t Δ_t — and keep the seed's form behind
``per_token_aligned=True`` (positions = the padded width of the batch, not a fixed 896). The anchor's
signs follow the seed code (it pushes the revised response's reward *down*); flagged, not changed.
LoRA: the seed's OPA step also puts LoRA on the vision tower and projector; ours stays on the language
model (the DPO step freezes those anyway). Stage chaining merges the OPA LoRA and trains a fresh LoRA
from it (the seed keeps training the OPA LoRA itself) — same start point and reference, different
parametrisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.data.formats import OPA_ERROR_WEIGHT, OPA_SCORE_WEIGHT, load_opa, opa_extra_from_pair
from bench.data.preference import PreferenceRecord
from bench.registry import METHODS
from bench.train.config import TrainConfig
from bench.train.method import ImageVariant, LogProbs, Method, Sequence, Stage, StepInputs
from methods.dpo import reward_metrics


def mask_pixels(pixels: torch.Tensor, generator: torch.Generator, ratio: float = 0.3) -> torch.Tensor:
    """Set ``ratio`` of the pixel positions (all channels) to the tensor's mean."""
    _, h, w = pixels.shape
    n = int(round(ratio * h * w))
    idx = torch.randperm(h * w, generator=generator)[:n]
    out = pixels.clone().reshape(pixels.shape[0], -1)
    out[:, idx] = pixels.mean()
    return out.reshape(pixels.shape)


MASKED = ImageVariant("masked", transform=mask_pixels, space="pixel", fixed=True)
GT, OWN, REV = (lambda r: r.extra["gt"]), (lambda r: r.extra["rollout"]), (lambda r: r.extra["revision"])
SEQS = [Sequence("gt", GT), Sequence("own", OWN), Sequence("rev", REV),
        Sequence("gt_masked", GT, image=MASKED), Sequence("rev_masked", REV, image=MASKED)]


@dataclass
class OpaDpoConfig:
    """Coefficients of ``configs/llava/llava_dpo.yaml``; loop settings of both stages' scripts."""

    beta: float = 0.1
    coef_standard: float = 1.0
    coef_ai: float = 1.0
    coef_image: float = 0.2
    coef_anchor: float = 1.0
    anchor_delta: float = 0.0
    per_token_aligned: bool = False
    sft: TrainConfig = field(default_factory=lambda: TrainConfig(lr=2e-5, epochs=2, batch_size=4, grad_accum=8,
                                                                 lora_r=256, lora_alpha=512, lora_dropout=0.0,
                                                                 max_length=2048))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-6, epochs=4, batch_size=2, grad_accum=4,
                                                                   lora_r=256, lora_alpha=512, lora_dropout=0.0,
                                                                   max_length=2048))


def token_weights(pre, response: str, sentences: list[dict], key: str, kind: str, n_tokens: int) -> torch.Tensor:
    """Per-token weights of ``response`` (as the loop tokenises it: " " + text, then </s>) from its sentences."""
    text = " " + response.strip()
    enc = pre.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans, pos = [], 0
    for s in sentences:
        sent = s[key].strip()
        if not sent:
            continue
        start = text.find(sent, pos)
        if start < 0:
            continue
        w = OPA_SCORE_WEIGHT[int(s["score"])] if kind == "score" else OPA_ERROR_WEIGHT.get(s["error_type"], 1.0)
        spans.append((start, start + len(sent), w))
        pos = start + len(sent)
    weights = []
    for a, b in enc["offset_mapping"]:
        w = 1.0
        for s0, s1, sw in spans:
            if a < s1 and b > s0:
                w = sw
                break
        weights.append(w)
    weights.append(1.0)  # </s>
    out = torch.ones(n_tokens)
    out[: min(n_tokens, len(weights))] = torch.tensor(weights[:n_tokens])
    return out


def _weights(inputs: StepInputs, seq: str, kind: str | None, length: int, device) -> torch.Tensor:
    if kind is None:
        return torch.ones(len(inputs.records), length, device=device)
    pre = inputs.extra["pre"]
    key = {"own": "copied", "rev": "rewritten", "rev_masked": "rewritten"}[seq]
    field_ = {"own": "rollout", "rev": "revision", "rev_masked": "revision"}[seq]
    return torch.stack([token_weights(pre, r.extra[field_], r.extra["sentences"], key, kind, length)
                        for r in inputs.records]).to(device)


def pair_loss(policy: dict[str, LogProbs], ref: dict[str, LogProbs], chosen: str, rejected: str, beta: float,
              w_chosen: torch.Tensor, w_rejected: torch.Tensor, per_token_aligned: bool) -> torch.Tensor:
    """Weighted DPO of one pair: sequence form (default) or the seed's position-aligned per-token form."""
    dc = (policy[chosen].logps - ref[chosen].logps) * policy[chosen].mask * w_chosen
    dr = (policy[rejected].logps - ref[rejected].logps) * policy[rejected].mask * w_rejected
    if not per_token_aligned:
        return -F.logsigmoid(beta * (dc.sum(-1) - dr.sum(-1))).mean()
    width = max(dc.shape[1], dr.shape[1])
    dc, dr = F.pad(dc, (0, width - dc.shape[1])), F.pad(dr, (0, width - dr.shape[1]))
    return -F.logsigmoid(beta * (dc - dr)).mean()


def opa_dpo_loss(inputs: StepInputs, cfg: OpaDpoConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    p, r = inputs.policy, inputs.reference
    dev = p["gt"].logps.device
    ones = lambda s: torch.ones_like(p[s].logps)  # noqa: E731
    pt = cfg.per_token_aligned
    l1 = pair_loss(p, r, "gt", "own", cfg.beta, ones("gt"), ones("own"), pt)
    l2 = pair_loss(p, r, "rev", "own", cfg.beta, _weights(inputs, "rev", "score", p["rev"].logps.shape[1], dev),
                   _weights(inputs, "own", "score", p["own"].logps.shape[1], dev), pt)
    l3 = pair_loss(p, r, "gt", "gt_masked", cfg.beta, ones("gt"), ones("gt_masked"), pt)
    l4 = pair_loss(p, r, "rev", "rev_masked", cfg.beta,
                   _weights(inputs, "rev", "error", p["rev"].logps.shape[1], dev),
                   _weights(inputs, "rev_masked", "error", p["rev_masked"].logps.shape[1], dev), pt)
    r_gt = cfg.beta * ((p["gt"].logps - r["gt"].logps) * p["gt"].mask).sum(-1)
    r_rev = cfg.beta * ((p["rev"].logps - r["rev"].logps) * p["rev"].mask).sum(-1)
    d = cfg.anchor_delta
    anchor = 2 * (-F.logsigmoid(r_gt - d) - F.logsigmoid(-r_rev + d)).mean()  # r3 = r1, r4 = r2 (same sequences)
    loss = (cfg.coef_standard * l1 + cfg.coef_ai * l2 + cfg.coef_standard * cfg.coef_image * l3
            + cfg.coef_ai * cfg.coef_image * l4 + cfg.coef_anchor * anchor)
    r_own = cfg.beta * ((p["own"].logps - r["own"].logps) * p["own"].mask).sum(-1)
    metrics = reward_metrics(r_gt.detach(), r_own.detach())
    for name, v in (("l1", l1), ("l2", l2), ("l3", l3), ("l4", l4), ("anchor", anchor)):
        metrics[f"loss/{name}"] = v.detach()
    return loss, metrics


def sft_loss(inputs: StepInputs, cfg: OpaDpoConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Token-level cross-entropy (mean over supervised tokens) of the SFT targets."""
    lp = inputs.policy["target"]
    nll = -(lp.logps * lp.mask).sum() / lp.mask.sum().clamp(min=1)
    return nll, {"sft/nll": nll.detach()}


def _sft_examples(rec: PreferenceRecord) -> list[PreferenceRecord]:
    """Each sample gives two SFT examples: (query, image, y_gt) and (query, image, y_r)."""
    return [PreferenceRecord(f"{rec.id}/gt", rec.image, rec.question, rec.extra["gt"], rec.extra["gt"]),
            PreferenceRecord(f"{rec.id}/rev", rec.image, rec.question, rec.extra["revision"], rec.extra["revision"])]


@METHODS.register("opa-dpo")
class OpaDpoMethod(Method):
    """OPA LoRA-SFT on gt + revisions, then the five-term DPO (own/revised/masked-image/anchor)."""

    name = "opa-dpo"
    version = "1"
    config_cls = OpaDpoConfig

    def stages(self, cfg: OpaDpoConfig) -> list[Stage]:
        return [Stage("opa", [Sequence("target", lambda r: r.chosen)], sft_loss, kind="sft", config_key="sft",
                      expand=_sft_examples),
                Stage("dpo", SEQS, opa_dpo_loss)]

    def load_records(self, path: Path, cfg: OpaDpoConfig, image_root: Path | None = None) -> list[PreferenceRecord]:
        from bench.io import iter_jsonl

        path = Path(path)
        first = next((rec for _, rec in iter_jsonl(path)), {})
        if "AI_json_report" in first:
            return load_opa(path, image_root)
        return self.prepare_records(super().load_records(path, cfg, image_root))

    def prepare_records(self, records: list[PreferenceRecord]) -> list[PreferenceRecord]:
        """Plain pairs (the bundled synthetic data) get OPA fields derived by ``opa_extra_from_pair``."""
        for rec in records:
            if not {"gt", "rollout", "revision", "sentences"} <= set(rec.extra):
                rec.extra.update(opa_extra_from_pair(rec))
        return records
