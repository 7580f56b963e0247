"""POVID — preference optimisation with AI-generated dispreferences (Zhou et al., arXiv 2402.11411).

Stage 1 (``YiyangZhou/POVID@92c7c67: scripts/run_dpo.sh``, ``tool/dpo_trainer.py (dpo_loss)``): sigmoid DPO,
β 0.1 (trainer default; never passed), on (ground-truth answer y_w, GPT-4V-corrupted answer y_l), clean image,
sequence log-probs summed over response tokens and ``</s>``; reference = the policy with adapters disabled.

Stage 2 (``scripts/run_povid.sh``; ``tool/dpo_trainer_inherent.py (concatenated_multi_forward,
_get_noisy_batch_logps, get_batch_metrics)``), on the merged stage-1 model with a fresh LoRA:

    L = 0.5 · L_text + 0.5 · L_noise                                  (per sample, then mean)
    L_text  = −log σ(β·[(log πθ(y_w) − log π_ref(y_w)) − (log πθ(y_l) − log π_ref(y_l))])
    L_noise = −log σ(β·[(log πθ(y_w) − log π_ref(y_w)) − (log πθ(ŷ) − log π_ref(ŷ'))])

ŷ: teacher-force y_w on the *noised* image and take the arg-max token at every supervised position;
``log πθ(ŷ) = Σ_t log πθ(ŷ_t | x_clean, y_w,<t)`` — those tokens scored under the *clean* image at the
same positions. The seed reads these log-probs off the very logits of the clean y_w forward, so we do too:
:meth:`bench.train.loop.RawForward.rescore` applies ``lm_head`` again to the kept hidden states of the
policy's clean chosen forward (gradient flows through them; arg-max has none). ŷ' is the reference's own
arg-max on the noised image, scored by the reference on the clean image (two no-grad forwards). Logged
rewards are L_text's (as the seed) plus ``rewards/noise_rejected``.

Noise (``llava/train/train_dpo_inherent.py: add_diffusion_noise``, ``noise_step=500``): forward diffusion on
the raw RGB image as a [0, 1] tensor (``ToTensor``), before pad-to-square and the CLIP processor:
``x_t = sqrt(ᾱ_t)·x_0 + sqrt(1 − ᾱ_t)·ε``, ``β_s = sigmoid(linspace(−6, 6, 1000))·(5e-3 − 1e-5) + 1e-5``,
``ᾱ_t = Π_{s≤t}(1 − β_s)`` at index t = 500 (ᾱ ≈ 0.745). Fresh noise every epoch
(``ImageVariant(fixed=False)``: seeded by (seed, sample id, epoch), so reruns and resumes are exact; its
reference terms are therefore computed online, never cached); policy and reference see the same noise.
Deviation: the seed converts back with ``ToPILImage`` (×255, cast to uint8 *without* clipping — values
outside [0, 1] wrap around); we clamp to [0, 1] before the conversion, deliberately.

Seed-script bugs (methods.md §2.2), intended semantics implemented:
* the ``--report_to wandb`` line lacks its trailing backslash, so ``--model_max_length 1024``,
  ``--gradient_checkpointing``, ``--tf32`` … never reach the trainer (effective max length 1048): we use
  ``max_length`` 1024;
* the patched ``DPOTrainer`` wraps the already-LoRA-wrapped model in a second LoRA: we train one LoRA per
  stage; reference = the frozen start of each stage (stage 2: the merged stage-1 model — the seed's
  ``model_ref`` copy). The second wrap leaves only LoRA trainable, so the projector group of
  ``--mm_projector_lr 2e-5`` is empty in the seed; we keep the projector frozen (no separate projector lr
  in the shared loop; ``train_projector`` would train it at the LoRA lr).
Recipe: lr 1e-7, cosine, warmup 3 %, stage 1 three epochs, stage 2 one epoch, batch 1 per device (GPU count
not given), LoRA r 128 / α 256 on the language model's linears, dropout disabled (trainer default).
Data: the released JSON (:func:`bench.data.formats.load_povid`) or our PreferenceRecord JSONL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bench.registry import METHODS
from bench.train.config import TrainConfig
from bench.train.loop import run_sequences
from bench.train.method import ImageVariant, LogProbs, Method, Sequence, Stage, StepInputs
from methods.dpo import CHOSEN, REJECTED, dpo_sigmoid_loss, dpo_stage_loss, reward_metrics

NOISE_STEPS = 1000


def diffusion_alpha_bar(t: int = 500, steps: int = NOISE_STEPS) -> float:
    """ᾱ_t of the seed's sigmoid schedule (index t of the cumulative product)."""
    betas = torch.sigmoid(torch.linspace(-6, 6, steps, dtype=torch.float64)) * (5e-3 - 1e-5) + 1e-5
    return float(torch.cumprod(1 - betas, 0)[t])


def add_diffusion_noise(image: torch.Tensor, generator: torch.Generator, t: int = 500) -> torch.Tensor:
    """``sqrt(ᾱ_t)·x + sqrt(1-ᾱ_t)·ε`` on a [3, H, W] tensor in [0, 1], clamped back to [0, 1]."""
    a = diffusion_alpha_bar(t)
    noise = torch.randn(image.shape, generator=generator, dtype=image.dtype)
    return (a ** 0.5 * image + (1 - a) ** 0.5 * noise).clamp(0, 1)


def noised_variant(t: int) -> ImageVariant:
    return ImageVariant(f"noised_t{t}", transform=lambda x, g: add_diffusion_noise(x, g, t), space="raw",
                        fixed=False)


@dataclass
class PovidConfig:
    """β 0.1, the 0.5/0.5 text/noise mix and noise step 500 of ``dpo_trainer_inherent.py`` /
    ``train_dpo_inherent.py``; loop settings of ``run_dpo.sh`` (stage1) and ``run_povid.sh`` (stage2)."""

    beta: float = 0.1
    text_weight: float = 0.5
    noise_weight: float = 0.5
    noise_step: int = 500
    stage1: TrainConfig = field(default_factory=lambda: TrainConfig(
        lr=1e-7, epochs=3, batch_size=1, grad_accum=1, warmup_ratio=0.03, max_length=1024, lora_r=128,
        lora_alpha=256, lora_dropout=0.05, train_projector=False))
    stage2: TrainConfig = field(default_factory=lambda: TrainConfig(
        lr=1e-7, epochs=1, batch_size=1, grad_accum=1, warmup_ratio=0.03, max_length=1024, lora_r=128,
        lora_alpha=256, lora_dropout=0.05, train_projector=False))


def noise_rejected_forward(inputs: StepInputs, cfg: PovidConfig) -> None:
    """Stage-2 hook: ``policy["noise_rejected"]`` and ``reference["noise_rejected"]`` (see module doc)."""
    ctx = inputs.require_context("povid stage 2")
    if not 0 <= cfg.noise_step < NOISE_STEPS:
        raise ValueError(f"povid: noise_step must be in [0, {NOISE_STEPS}), got {cfg.noise_step}")
    noisy = Sequence("chosen_noised", CHOSEN.response, image=noised_variant(cfg.noise_step))
    clean = Sequence("chosen", CHOSEN.response)
    model, records, fwd = ctx.model, inputs.records, ctx.forward
    with torch.no_grad():  # the policy's arg-max under noise (not differentiable anyway)
        _, _, raw_noisy = run_sequences(model, records, [noisy], forward=fwd)
    inputs.policy["noise_rejected"] = ctx.raw.rescore("chosen", raw_noisy.argmax_of("chosen_noised"))
    with torch.no_grad(), ctx.reference_mode():
        _, _, ref_noisy = run_sequences(model, records, [noisy], forward=fwd)
        ref, _, _ = run_sequences(model, records, [clean], forward=fwd,
                                  alt_targets=ref_noisy.argmax_of("chosen_noised"))
    inputs.reference["noise_rejected"] = ref["chosen"]


def povid_stage2_loss(inputs: StepInputs, cfg: PovidConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``text_weight·L_text + noise_weight·L_noise`` per sample, mean over the batch."""
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


@METHODS.register
class PovidMethod(Method):
    """Two stages: DPO, then 0.5·DPO + 0.5·DPO against arg-max tokens under diffusion noise."""

    name = "povid"
    data_pipeline = "povid"
    version = "1"
    description = "DPO on corrupted answers, then + DPO against the model's own arg-max under diffusion noise"
    config_cls = PovidConfig

    def stages(self, cfg: PovidConfig) -> list[Stage]:
        return [Stage("stage1", [CHOSEN, REJECTED], dpo_stage_loss, config_key="stage1"),
                Stage("stage2", [CHOSEN, REJECTED], povid_stage2_loss, config_key="stage2",
                      extra_forward=noise_rejected_forward)]
