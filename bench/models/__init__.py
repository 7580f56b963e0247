"""Model entries. ``tiny-llava`` (embedded default) is registered here; ``llava-7b``/``llava-13b``
and local llava-hf directories in :mod:`bench.models.loading`."""

from __future__ import annotations

from pathlib import Path

import torch

from bench.data.synthetic import SYNTHETIC_DIRNAME, prepare_synthetic
from bench.models import families  # noqa: F401  (registers the built-in model families: bench.models.family.FAMILIES)
from bench.models import tiny_llava
from bench.paths import data_dir
from bench.registry import MODELS


class TinyLlava:
    """Embedded default: ~1M-parameter LlavaForConditionalGeneration pretrained on the synthetic glyph world."""

    name = "tiny-llava"
    version = "1"
    description = "embedded ~1M-param LLaVA (shipped, CPU), on the bundled synthetic glyph world"
    default_benchmarks = ["pope", "chair", "shr-annotation", "mhalubench"]
    # Scale profile: the papers' learning rates (1e-7 … 2e-5) barely move a 1M-parameter model in the
    # few dozen CPU steps of the embedded run; these settings apply to every method's TrainConfig and
    # are recorded in each run.json. Per-method overrides still win. HSA-DPO multiplies the rejected
    # log-ratio by the unnormalised severity score (1–3; 3 for an affirmed absent object), so at the shared
    # lr its rejected-side step is up to 3× larger: measured on this testbed, lr 3e-4 over-corrects it
    # (POPE yes-ratio 0.23, CHAIR recall 70 %) while 1e-4 does not — hence its own lr, a third of the others'.
    train_profile = {"*train": {"lr": 3e-4, "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "batch_size": 8,
                                "grad_accum": 1, "max_length": 256, "epochs": 1, "max_steps": 40,
                                "warmup_ratio": 0.05, "bf16": False},
                     "hsa-dpo": {"train": {"lr": 1e-4}}}

    # Methods build their preference data with their own pipelines (bench.data.method_data) from the base
    # model's generations on the synthetic world's "pref" images, judged by the offline annotation feedback;
    # POVID / HSA-DPO / OPA-DPO items include one object-existence question per image besides the description
    # (their papers' data mix descriptions and questions; see bench.data.pipelines.questions).
    pipeline_source = {"source": "coco", "split": "pref", "max_new_tokens": 64, "batch_size": 16,
                       "params": {"questions": 1}}

    def load(self, dtype: torch.dtype = torch.float32, device: str = "cpu"):
        return tiny_llava.load(dtype=dtype, device=device)

    def missing_resources(self) -> list[str]:
        if not (tiny_llava.ASSET_DIR / "model.safetensors").is_file():
            return [f"model tiny-llava: {tiny_llava.ASSET_DIR} is incomplete (reinstall bench, or rebuild it with"
                    " `python -m bench.models.tiny_pretrain`, see RECIPE.md)"]
        return []

    def weights_source(self) -> dict:
        """Where the weights come from (content-hashed into cache keys by ``bench/fingerprint.py``)."""
        return {"path": str(tiny_llava.ASSET_DIR)}

    def default_data_root(self) -> Path:
        """``$BENCH_DATA_DIR/synthetic-v<generator version>``, built on first use (seconds, deterministic)."""
        root = data_dir() / SYNTHETIC_DIRNAME
        if not (root / "manifest.json").exists():
            prepare_synthetic(root, seed=0)
        return root


MODELS.add("tiny-llava", TinyLlava())
