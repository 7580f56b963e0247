"""HSA-DPO — hallucination-severity-aware DPO (Xiao et al., AAAI 2025, arXiv 2404.14233).

Objective (``Mr-Loevan/HSA-DPO@dbb76cd: hsa_dpo/trainer/base_dpo_trainer.py (BaseDPOTrainer.dpo_loss)``):

    L = −log σ( β · [ w_c·(log πθ(y_w|x) − log π_ref(y_w|x)) − w_r·(log πθ(y_l|x) − log π_ref(y_l|x)) ] )

averaged over the batch; ``w_r`` = the sample's ``rejected_score`` (severity of the rejected response) when
``use_rejected_score`` (default True), ``w_c`` = ``chosen_score`` when ``use_chosen_score`` (default
False), else 1. Scores are read raw from the data, 1.0 when absent, no normalisation (``hsa_dpo_process``).
The seed multiplies the policy and the reference log-prob of y_l by the same factor, which is the log-ratio
scaled (:func:`methods.dpo.dpo_sigmoid_loss`'s weights). Sequence log-probs are sums over response tokens
and ``</s>``; logged rewards are unweighted (as the seed). The ``gamma`` argument is unused there.

Recipe (``hsa_dpo_train.sh``, methods.md §3.2): β 0.1, lr 2e-6, cosine, warmup 3 % (``--warmup_steps 0``),
2 epochs, global batch 16 (8 per GPU × 2 GPUs; here 4 × 4 accumulation), ``model_max_length`` 1024, LoRA
r 128 / α 256 on the language model's linears, projector trained at the LoRA lr (re-enabled after LoRA
wrapping; ``--mm_projector_lr 0`` is not used by that trainer), dropout disabled. Reference: a frozen copy of
the base that runs only the language model, on input embeddings built by the *policy's*
``prepare_inputs_labels_for_multimodal`` (``hsa_dpo/trainer/llava_dpo_trainer.py``, ``concatenated_forward``
line 45, called for the reference at line 109) — so the reference sees the policy's current, trained projector
and moves with it after the first update. ``train.reference_projector="policy"`` (default) reproduces this
(adapters disabled, current projector, reference recomputed every step); ``"frozen"`` uses a frozen copy of the
starting projector with cached reference log-probs (faster, a fixed reference, not the seed's run; measured in
docs/method-switches.md).
Data: the released preference JSONL (:func:`bench.data.formats.load_hsa`) or our PreferenceRecord JSONL.
Deviation: a missing image is a load error (the seed substitutes a zero image with a warning).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bench.data.preference import PreferenceRecord
from bench.registry import METHODS
from bench.train.config import TrainConfig
from bench.train.method import Method, Stage, StepInputs
from methods.dpo import CHOSEN, REJECTED, dpo_sigmoid_loss, reward_metrics


@dataclass
class HsaDpoConfig:
    """β and which severity scores weight the log-ratios; loop defaults from ``hsa_dpo_train.sh``;
    ``train.reference_projector`` ``"policy"`` (seed: reference on the policy's current projector) or
    ``"frozen"`` (starting projector, cached reference)."""

    beta: float = 0.1
    use_rejected_score: bool = True
    use_chosen_score: bool = False
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        lr=2e-6, epochs=2, batch_size=4, grad_accum=4, warmup_ratio=0.03, max_length=1024, lora_r=128,
        lora_alpha=256, lora_dropout=0.05, train_projector=True, reference_projector="policy",
        disable_dropout=True))


def severity_weights(records: list[PreferenceRecord], attr: str, enabled: bool, device) -> torch.Tensor | float:
    """Per-sample weights from ``attr`` (``chosen_score``/``rejected_score``), 1.0 where absent; 1.0 if disabled."""
    if not enabled:
        return 1.0
    return torch.tensor([1.0 if getattr(r, attr) is None else float(getattr(r, attr)) for r in records],
                        device=device, dtype=torch.float32)


def hsa_dpo_loss(inputs: StepInputs, cfg: HsaDpoConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Severity-weighted sigmoid DPO, mean over the batch; rewards logged unweighted."""
    p, r = inputs.policy, inputs.reference
    device = p["chosen"].logps.device
    w_c = severity_weights(inputs.records, "chosen_score", cfg.use_chosen_score, device)
    w_r = severity_weights(inputs.records, "rejected_score", cfg.use_rejected_score, device)
    losses, cr, rr = dpo_sigmoid_loss(p["chosen"].sum(), p["rejected"].sum(), r["chosen"].sum(), r["rejected"].sum(),
                                      cfg.beta, chosen_weight=w_c, rejected_weight=w_r)
    return losses.mean(), reward_metrics(cr, rr)


@METHODS.register
class HsaDpoMethod(Method):
    """Severity-weighted DPO (rejected log-ratio × rejected_score), as Mr-Loevan/HSA-DPO."""

    name = "hsa-dpo"
    data_pipeline = "hsa-dpo"
    version = "2"
    description = "DPO with the rejected log-ratio weighted by the hallucination severity (rejected_score)"
    config_cls = HsaDpoConfig

    def stages(self, cfg: HsaDpoConfig) -> list[Stage]:
        return [Stage("dpo", [CHOSEN, REJECTED], hsa_dpo_loss)]
