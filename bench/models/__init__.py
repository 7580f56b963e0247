"""Model entries. ``tiny-llava`` (embedded default) is registered here; ``llava-7b``/``llava-13b``
and local llava-hf directories in :mod:`bench.models.loading`."""

from __future__ import annotations

from pathlib import Path

import torch

from bench.registry import MODELS


class TinyLlava:
    """Embedded default: ~1M-parameter LlavaForConditionalGeneration pretrained on the synthetic glyph world."""

    name = "tiny-llava"
    version = "1"
    description = "embedded ~1M-param LLaVA (shipped, CPU), on the bundled synthetic glyph world"
    default_benchmarks = ["pope", "chair", "shr-annotation", "mhalubench"]
    # Scale profile: the papers' learning rates (1e-7 … 2e-5) barely move a 1M-parameter model in the
    # few dozen CPU steps of the embedded run; these settings apply to every method's TrainConfig and
    # are recorded in each run.json. Per-method overrides still win.
    train_profile = {"*train": {"lr": 1e-4, "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "batch_size": 8,
                                "grad_accum": 1, "max_length": 256, "epochs": 1, "max_steps": 40,
                                "warmup_ratio": 0.05, "bf16": False}}

    def load(self, dtype: torch.dtype = torch.float32, device: str = "cpu"):
        from bench.models.tiny_llava import load

        return load(dtype=dtype, device=device)

    def default_data_root(self) -> Path:
        """``$BENCH_DATA_DIR/synthetic``, built on first use (seconds, deterministic)."""
        from bench.data.synthetic import prepare_synthetic
        from bench.paths import data_dir

        root = data_dir() / "synthetic"
        if not (root / "manifest.json").exists():
            prepare_synthetic(root, seed=0)
        return root


MODELS.add("tiny-llava", TinyLlava())
