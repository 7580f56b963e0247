"""HA-DPO — hallucination-aware DPO (Zhao et al., arXiv 2311.16839).

Objective (``opendatalab/HA-DPO@42f72c5: ha_dpo/trainer/base_dpo_trainer.py (BaseDPOTrainer.dpo_loss)``),
sigmoid DPO with sequence log-probs summed over the response tokens and ``</s>``, mean over pairs:

    L = −log σ( β · [ (log πθ(y_w|x) − log π_ref(y_w|x)) − (log πθ(y_l|x) − log π_ref(y_l|x)) ] ),  β = 0.1

The constructor's ``gamma`` (an LM term) is used only for MiniGPT-4, never for LLaVA; not offered here.
What makes it HA-DPO is the data and the recipe (``ha_dpo/models/llava-v1_5/README.md`` training command,
``train_dpo.py``, methods.md §1.2):

* data (:func:`bench.data.formats.load_hadpo`): POPE-style pairs the model got wrong + description pairs
  twice, one chosen / rejected / describe-prompt drawn per image with ``random.seed(42)``;
* lr 2e-6, cosine, warmup 3 % (``--warmup_steps 0`` falls back to the script's ratio), 1 epoch, AdamW,
  weight decay 0, max grad norm 1.0; global batch 128 pairs (16 per GPU × 8 GPUs) — here micro-batch 4 ×
  32 accumulation steps, the same mean over 128 pairs per update; ``model_max_length`` 2048;
* LoRA r 128, α 256 on q/k/v/o/gate/up/down of the language model (``find_all_linear_names``);
* projector trained (``train_projector``): ``get_peft_model`` runs before ``initialize_vision_modules``,
  which re-enables the projector's gradients; ``--mm_projector_lr 0`` is passed but this trainer builds the
  default optimizer, so the projector trains at the LoRA lr and is saved as ``non_lora_trainables``;
* dropout disabled in policy and reference (``disable_dropout_in_model``; also zeroes LoRA dropout);
* reference = a second, frozen copy of the base model, but it runs only the language model: its input
  embeddings (image features included) are built by the *policy's* ``prepare_inputs_labels_for_multimodal``
  (``ha_dpo/trainer/llava_dpo_trainer.py``, ``concatenated_forward`` line 43, called for the reference at line
  100), i.e. with the policy's current, trained projector (no gradient). So π_ref moves with the projector
  after the first update; it is *not* the base model with the starting projector. The loop reproduces this
  with ``train.reference_projector="policy"`` (default): adapters disabled, current projector, reference
  log-probs recomputed at every step. ``"frozen"`` keeps a frozen copy of the starting projector instead
  (a fixed reference, cached on disk — faster, and the textbook DPO reference, but not the seed's run;
  measured in docs/method-switches.md).

Deviations: vision features in bf16 as the seed (the loop's autocast), no ZeRO-3 / gradient checkpointing
(memory levers, not semantics).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.registry import METHODS
from bench.train.config import TrainConfig
from bench.train.method import Method, Stage
from methods.dpo import CHOSEN, REJECTED, dpo_stage_loss


@dataclass
class HaDpoConfig:
    """β 0.1 (``BaseDPOTrainer`` default as called); loop settings of HA-DPO's LLaVA-1.5-7B command;
    ``data_seed`` 42 = the seed's ``random.seed`` for the pair/prompt draws of ``desc_data.json``;
    ``train.reference_projector`` ``"policy"`` (the seed's reference sees the policy's current projector) or
    ``"frozen"`` (starting projector, cached reference)."""

    beta: float = 0.1
    data_seed: int = 42
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        lr=2e-6, epochs=1, batch_size=4, grad_accum=32, warmup_ratio=0.03, max_length=2048, lora_r=128,
        lora_alpha=256, lora_dropout=0.05, train_projector=True, reference_projector="policy",
        disable_dropout=True, cache_reference=True))


@METHODS.register
class HaDpoMethod(Method):
    """DPO on HA-DPO data (POPE-style pairs + description pairs ×2), projector trained, dropout off."""

    name = "ha-dpo"
    data_pipeline = "ha-dpo"
    version = "2"
    description = "sigmoid DPO on hallucination-aware pairs; LoRA r128 + trained projector (HA-DPO recipe)"
    config_cls = HaDpoConfig

    def stages(self, cfg: HaDpoConfig) -> list[Stage]:
        return [Stage("dpo", [CHOSEN, REJECTED], dpo_stage_loss)]
