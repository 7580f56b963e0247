"""Plain DPO baseline (Rafailov et al., 2023, arXiv 2305.18290), sigmoid loss.

    L = -log σ( β · [ (log πθ(y_w|x) − log π_ref(y_w|x)) − (log πθ(y_l|x) − log π_ref(y_l|x)) ] )

averaged over the batch, with sequence log-probs summed over response tokens (and ``</s>``), as
TRL's ``DPOTrainer`` with ``loss_type="sigmoid"`` and no label smoothing. Reference = the starting
model with the LoRA adapters disabled (TRL's PEFT path). Logged like TRL: ``rewards/chosen =
β·(log πθ − log π_ref)(y_w)``, ``rewards/rejected`` likewise, ``rewards/margins``,
``rewards/accuracies`` (chosen reward > rejected reward).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from bench.registry import METHODS
from bench.train.config import TrainConfig
from bench.train.method import Method, Sequence, Stage, StepInputs

CHOSEN = Sequence("chosen", lambda r: r.chosen)
REJECTED = Sequence("rejected", lambda r: r.rejected)


def dpo_sigmoid_loss(
    policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
    beta: float, chosen_weight: torch.Tensor | float = 1.0, rejected_weight: torch.Tensor | float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample sigmoid DPO losses and the (unweighted) chosen/rejected rewards.

    ``chosen_weight``/``rejected_weight`` scale the two log-ratios inside the sigmoid (HSA-DPO's
    severity weights); 1.0 gives plain DPO.
    """
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    logits = chosen_weight * chosen_ratio - rejected_weight * rejected_ratio
    losses = -F.logsigmoid(beta * logits)
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def reward_metrics(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        "rewards/chosen": chosen_rewards.mean(),
        "rewards/rejected": rejected_rewards.mean(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean(),
    }


@dataclass
class DpoConfig:
    """β = 0.1 (TRL default). Loop defaults: HA-DPO's LLaVA-1.5 script values (lr 2e-6, LoRA r128/α256)."""

    beta: float = 0.1
    train: TrainConfig = field(default_factory=TrainConfig)


def dpo_stage_loss(inputs: StepInputs, cfg: DpoConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    p, r = inputs.policy, inputs.reference
    losses, cr, rr = dpo_sigmoid_loss(p["chosen"].sum(), p["rejected"].sum(), r["chosen"].sum(), r["rejected"].sum(),
                                      cfg.beta)
    return losses.mean(), reward_metrics(cr, rr)


@METHODS.register
class DpoMethod(Method):
    """Plain sigmoid DPO baseline (β 0.1, LoRA, reference = adapters disabled)."""

    name = "dpo"
    data_pipeline = "hsa-dpo"
    version = "1"
    config_cls = DpoConfig

    def stages(self, cfg: DpoConfig) -> list[Stage]:
        return [Stage("dpo", [CHOSEN, REJECTED], dpo_stage_loss)]
