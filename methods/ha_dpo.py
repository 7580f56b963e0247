"""HA-DPO — hallucination-aware DPO (Zhao et al., arXiv 2311.16839).

Objective: plain sigmoid DPO, β 0.1, sequence log-prob = sum over response tokens
(``opendatalab/HA-DPO@42f72c5: ha_dpo/trainer/base_dpo_trainer.py (dpo_loss)``); the ``gamma``
argument is unused for LLaVA (the LM term exists only for MiniGPT-4) and is not offered here.
What makes it HA-DPO is the data and the recipe (``ha_dpo/models/llava-v1_5/README.md``): lr 2e-6
cosine, warmup 3%, 1 epoch, LoRA r128/α256 on the LM linears, projector trained (the seed's code
path, methods.md §1.2), dropout disabled in policy and reference, reference = a frozen copy of the
base model — numerically the base with adapters disabled once dropout is off, which is what the loop
uses (and caches).

Data (:func:`bench.data.formats.load_hadpo`): ``desc_data.json`` description pairs (one chosen and one
rejected picked per image with seed 42, one of four describe-prompts at random) **twice** + the
POPE-style pairs of ``pope_data.json`` with ``correct == False``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.data.preference import PreferenceRecord
from bench.registry import METHODS
from bench.train.config import TrainConfig
from bench.train.method import Method, Stage
from methods.dpo import CHOSEN, REJECTED, dpo_stage_loss


@dataclass
class HaDpoConfig:
    """β 0.1; loop defaults of HA-DPO's LLaVA-1.5-7B training command."""

    beta: float = 0.1
    seed: int = 42  # data assembly (pair and prompt choice), as the seed's "offline" strategy
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=2e-6, epochs=1, max_length=2048,
                                                                   train_projector=True))


@METHODS.register("ha-dpo")
class HaDpoMethod(Method):
    """DPO on HA-DPO data (desc pairs ×2 + POPE-style pairs), projector trained, dropout off."""

    name = "ha-dpo"
    version = "1"
    config_cls = HaDpoConfig

    def stages(self, cfg: HaDpoConfig) -> list[Stage]:
        return [Stage("dpo", [CHOSEN, REJECTED], dpo_stage_loss)]

    def load_records(self, path: Path, cfg: HaDpoConfig, image_root: Path | None = None) -> list[PreferenceRecord]:
        from bench.data.formats import load_hadpo

        path = Path(path)
        if path.is_dir() or path.name in ("desc_data.json", "pope_data.json"):
            folder = path if path.is_dir() else path.parent
            return load_hadpo(folder / "desc_data.json", folder / "pope_data.json", image_root or folder, cfg.seed)
        return super().load_records(path, cfg, image_root)
