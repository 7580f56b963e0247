"""POVID — preference optimisation with AI-generated dispreferences (Zhou et al., arXiv 2402.11411).

Stage 1 (``scripts/run_dpo.sh``): sigmoid DPO, β 0.1, on (ground-truth answer, GPT-4V-corrupted answer)
with the clean image; reference = the policy with adapters disabled.

Stage 2 (``scripts/run_povid.sh``; ``tool/dpo_trainer_inherent.py``), on the merged stage-1 model with a
fresh LoRA:

    L = 0.5 · L_text + 0.5 · L_noise

``L_text`` is the stage-1 term. ``L_noise`` is DPO with the same chosen y_w and a rejected sequence ŷ
built token by token: teacher-force y_w on the *noised* image, take the arg-max token ŷ_t at each
supervised position, and score ŷ under the *clean* image with y_w as context,
``log π(ŷ|x) = Σ_t log π(ŷ_t | x_clean, y_w,<t)``. The reference does the same with its own arg-max
(adapters disabled). Gradient flows only through the clean-image log-probs.

Noise (``train_dpo_inherent.py: add_diffusion_noise``, t = 500): forward diffusion on the raw RGB image
in [0, 1], ``x_t = sqrt(ᾱ_t)·x_0 + sqrt(1 − ᾱ_t)·ε`` with T = 1000 and
``β_s = sigmoid(linspace(−6, 6, 1000))·(5e-3 − 1e-5) + 1e-5``, applied before pad-to-square and the
CLIP processor; fresh noise each epoch (seeded by sample id and epoch, so reruns are reproducible).
Deviation: the seed converts back with ``ToPILImage`` without clipping (uint8 wrap-around of values
outside [0, 1]); we clamp to [0, 1] deliberately.

Seed-script bugs not reproduced (methods.md §2.2): the lost flags after ``--report_to wandb``
(max length 1048, no gradient checkpointing) and the double LoRA wrap; we implement the intended
semantics: one LoRA per stage, reference = the frozen start of each stage, ``model_max_length`` 1024.
Defaults: lr 1e-7, cosine, warmup 3%, stage 1 three epochs, stage 2 one epoch, LoRA r128/α256,
projector frozen (the second wrap leaves only LoRA trainable).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bench.registry import METHODS
from bench.train.config import TrainConfig
from bench.train.method import ImageVariant, LogProbs, Method, Sequence, Stage, StepInputs
from methods.dpo import CHOSEN, REJECTED, dpo_sigmoid_loss, dpo_stage_loss, reward_metrics


def diffusion_alpha_bar(t: int = 500, steps: int = 1000) -> float:
    betas = torch.sigmoid(torch.linspace(-6, 6, steps, dtype=torch.float64)) * (5e-3 - 1e-5) + 1e-5
    return float(torch.cumprod(1 - betas, 0)[t])


def add_diffusion_noise(image: torch.Tensor, generator: torch.Generator, t: int = 500) -> torch.Tensor:
    """``sqrt(ᾱ_t)·x + sqrt(1-ᾱ_t)·ε`` on a [3, H, W] tensor in [0, 1], clamped back to [0, 1]."""
    a = diffusion_alpha_bar(t)
    noise = torch.randn(image.shape, generator=generator, dtype=image.dtype)
    return (a ** 0.5 * image + (1 - a) ** 0.5 * noise).clamp(0, 1)


NOISED = ImageVariant("noised", transform=add_diffusion_noise, space="raw", fixed=False)


@dataclass
class PovidConfig:
    """β 0.1 (trainer default), 0.5/0.5 text/noise mix; stage loop settings from the two scripts."""

    beta: float = 0.1
    text_weight: float = 0.5
    noise_weight: float = 0.5
    stage1: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-7, epochs=3, batch_size=1,
                                                                    max_length=1024))
    stage2: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-7, epochs=1, batch_size=1,
                                                                    max_length=1024))


def _noise_rejected(model, inputs: StepInputs, cfg: PovidConfig, with_grad: bool) -> LogProbs:
    """Arg-max tokens of y_w teacher-forced on the noised image, scored under the clean image."""
    from bench.train.loop import _adapters_off, run_sequences

    ex = inputs.extra
    noisy = Sequence("chosen_noised", lambda r: r.chosen, image=NOISED)
    clean = Sequence("chosen_clean", lambda r: r.chosen)
    args = (ex["pre"], inputs.records)
    rest = (ex["cfg"], ex["seed"], ex["epoch"], ex["device"], ex["pad_id"])
    with torch.no_grad():
        _, _, (_, _, argmax) = run_sequences(model, *args, [noisy], *rest)
    if with_grad:
        lps, _, _ = run_sequences(model, *args, [clean], *rest, alt_targets=[a.detach() for a in argmax])
    else:
        with torch.no_grad():
            lps, _, _ = run_sequences(model, *args, [clean], *rest, alt_targets=[a.detach() for a in argmax])
    return lps["chosen_clean"]


def povid_extra_forward(model, inputs: StepInputs, cfg: PovidConfig) -> None:
    from bench.train.loop import _adapters_off

    inputs.policy["noise_rejected"] = _noise_rejected(model, inputs, cfg, with_grad=True)
    with _adapters_off(model):
        inputs.reference["noise_rejected"] = _noise_rejected(model, inputs, cfg, with_grad=False)


def povid_stage2_loss(inputs: StepInputs, cfg: PovidConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    p, r = inputs.policy, inputs.reference
    text, cr, rr = dpo_sigmoid_loss(p["chosen"].sum(), p["rejected"].sum(), r["chosen"].sum(), r["rejected"].sum(),
                                    cfg.beta)
    noise, _, nr = dpo_sigmoid_loss(p["chosen"].sum(), p["noise_rejected"].sum(), r["chosen"].sum(),
                                    r["noise_rejected"].sum(), cfg.beta)
    loss = (cfg.text_weight * text + cfg.noise_weight * noise).mean()
    metrics = reward_metrics(cr, rr)
    metrics["loss/text"], metrics["loss/noise"] = text.mean().detach(), noise.mean().detach()
    metrics["rewards/noise_rejected"] = nr.mean()
    return loss, metrics


@METHODS.register("povid")
class PovidMethod(Method):
    """Two stages: DPO, then 0.5·DPO + 0.5·DPO against arg-max tokens under diffusion noise."""

    name = "povid"
    version = "1"
    config_cls = PovidConfig

    def load_records(self, path, cfg, image_root=None):
        """POVID's released JSON list (``conversations``/``rejected_conversations``) or our JSONL."""
        from pathlib import Path

        from bench.data.formats import load_povid

        if Path(path).suffix == ".json":
            return load_povid(Path(path), image_root)
        return super().load_records(path, cfg, image_root)

    def stages(self, cfg: PovidConfig) -> list[Stage]:
        return [Stage("stage1", [CHOSEN, REJECTED], dpo_stage_loss, config_key="stage1"),
                Stage("stage2", [CHOSEN, REJECTED], povid_stage2_loss, config_key="stage2",
                      extra_forward=povid_extra_forward)]
