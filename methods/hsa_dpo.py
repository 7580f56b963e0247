"""HSA-DPO — hallucination-severity-aware DPO (Xiao et al., AAAI 2025, arXiv 2404.14233).

    L = −log σ( β · [ w_c·(log πθ(y_w|x) − log π_ref(y_w|x)) − w_r·(log πθ(y_l|x) − log π_ref(y_l|x)) ] )

``w_r`` = the sample's ``rejected_score`` (severity of the rejected response) when
``use_rejected_score`` (default True), ``w_c`` = ``chosen_score`` when ``use_chosen_score`` (default
False), else 1; scores are read raw from the data (1.0 when absent), no normalisation — as
``Mr-Loevan/HSA-DPO@dbb76cd: hsa_dpo/trainer/base_dpo_trainer.py (dpo_loss)``. Sequence log-probs
are sums over response tokens; logged rewards are unweighted. Defaults from ``hsa_dpo_train.sh``:
β 0.1, lr 2e-6, 2 epochs, LoRA r128/α256 on the LM linears, projector trained (the seed's code path
re-enables it after LoRA wrapping, methods.md §3.2), dropout disabled, reference = the frozen base
(≡ adapters disabled with dropout off). Data: ``WenyiXiao/HSA-DPO`` preference JSONL
(``bench.data.loaders``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bench.registry import METHODS
from bench.train.config import TrainConfig
from bench.train.method import Method, Stage, StepInputs
from methods.dpo import CHOSEN, REJECTED, dpo_sigmoid_loss, reward_metrics


@dataclass
class HsaDpoConfig:
    """β and which severity scores weight the log-ratios; loop defaults from hsa_dpo_train.sh."""

    beta: float = 0.1
    use_rejected_score: bool = True
    use_chosen_score: bool = False
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=2e-6, epochs=2, max_length=1024,
                                                                   train_projector=True))


def severity_weights(records, attr: str, enabled: bool, device) -> torch.Tensor | float:
    if not enabled:
        return 1.0
    return torch.tensor([float(getattr(r, attr)) if getattr(r, attr) is not None else 1.0 for r in records],
                        device=device)


def hsa_dpo_loss(inputs: StepInputs, cfg: HsaDpoConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    p, r = inputs.policy, inputs.reference
    device = p["chosen"].logps.device
    w_c = severity_weights(inputs.records, "chosen_score", cfg.use_chosen_score, device)
    w_r = severity_weights(inputs.records, "rejected_score", cfg.use_rejected_score, device)
    losses, cr, rr = dpo_sigmoid_loss(p["chosen"].sum(), p["rejected"].sum(), r["chosen"].sum(), r["rejected"].sum(),
                                      cfg.beta, chosen_weight=w_c, rejected_weight=w_r)
    return losses.mean(), reward_metrics(cr, rr)


@METHODS.register("hsa-dpo")
class HsaDpoMethod(Method):
    """Severity-weighted DPO (rejected log-ratio × rejected_score), as Mr-Loevan/HSA-DPO."""

    name = "hsa-dpo"
    version = "1"
    config_cls = HsaDpoConfig

    def stages(self, cfg: HsaDpoConfig) -> list[Stage]:
        return [Stage("dpo", [CHOSEN, REJECTED], hsa_dpo_loss)]
