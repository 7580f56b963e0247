"""Model entries (registry ``bench.models``) and loading a checkpoint = base + adapters.

``llava-7b`` / ``llava-13b`` resolve to ``llava-hf/llava-1.5-{7b,13b}-hf`` loaded with
``LlavaForConditionalGeneration`` + ``AutoProcessor``; any local directory in the llava-hf layout
works too. Loading never reaches the network implicitly: with ``HF_HUB_OFFLINE=1`` (or no
connection) a missing model fails at once with the download command, and ``BENCH_MODEL_<NAME>``
(e.g. ``BENCH_MODEL_LLAVA_7B``) may point at a local copy.

A checkpoint written by the loop is a folder with ``stages.json``; :func:`apply_checkpoint`
merges each finished stage's LoRA adapter (and trained projector) into the base in order.
A plain peft adapter folder (``adapter_config.json``) is accepted too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from bench.errors import BenchError, OfflineError
from bench.io import read_json
from bench.models.api import ApiModel, is_api_model
from bench.models.llava import LlavaPreprocessor, make_preprocessor
from bench.registry import MODELS


def load_hf_llava(path_or_id: str, dtype: torch.dtype = torch.float32, device: str = "cpu", env_var: str | None = None):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    local = os.environ.get(env_var) if env_var else None
    target = local or path_or_id
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
    kwargs: dict[str, Any] = {"local_files_only": True} if (offline or Path(target).exists()) else {}
    try:
        processor = AutoProcessor.from_pretrained(target, **kwargs)
        model = LlavaForConditionalGeneration.from_pretrained(target, dtype=dtype, **kwargs)
    except OSError as exc:
        hint = (f"pre-download it on a connected machine with `huggingface-cli download {path_or_id}` (then run with"
                f" HF_HUB_OFFLINE=1), or point {env_var or 'the --model argument'} at a local copy")
        raise OfflineError(f"cannot load model {target!r}: {str(exc).splitlines()[0]}; {hint}") from None
    return model.to(device).eval(), processor


class HfLlava:
    """LLaVA-1.5 from the llava-hf checkpoints."""

    version = "1"

    def __init__(self, name: str, repo_id: str):
        self.name, self.repo_id = name, repo_id
        self.description = f"LLaVA-1.5 ({repo_id}), vicuna_v1 template, pad-to-square"
        self.env_var = "BENCH_MODEL_" + name.upper().replace("-", "_")

    revision: str | None = None

    def load(self, dtype: torch.dtype = torch.float32, device: str = "cpu"):
        return load_hf_llava(self.repo_id, dtype, device, self.env_var)

    def local_path(self) -> Path | None:
        """A local copy: ``$BENCH_MODEL_<NAME>`` or an existing folder given as the id."""
        local = os.environ.get(self.env_var) if self.env_var else None
        if local:
            return Path(local)
        return Path(self.repo_id) if Path(self.repo_id).exists() else None

    def missing_resources(self) -> list[str]:
        """Preflight: the weights must be on this machine (a local folder, or the hub snapshot in the local
        Hugging Face cache); runs never download implicitly."""
        from bench.fingerprint import hub_snapshot

        local = self.local_path()
        if local is not None:
            if not (local / "config.json").is_file():
                return [f"model {self.name}: {local} holds no config.json (expected a llava-hf checkpoint folder)"]
            return []
        if hub_snapshot(self.repo_id, self.revision) is None:
            env = f" or point ${self.env_var} at a local copy" if self.env_var else ""
            return [f"model {self.name}: {self.repo_id} is not in the local Hugging Face cache; download it with"
                    f" `huggingface-cli download {self.repo_id}` on a connected machine{env}"]
        return []

    def weights_source(self) -> dict:
        """``{"path": folder}`` for a local copy (hashed by content), else the hub id with the commit its local
        snapshot resolves to (``bench/fingerprint.py``); never the name alone."""
        from bench.fingerprint import hub_snapshot

        local = self.local_path()
        if local is not None:
            return {"path": str(local)}
        snap = hub_snapshot(self.repo_id, self.revision)
        return {"hub": self.repo_id, "revision": self.revision, "commit": snap.name if snap else None}

    def default_data_root(self) -> Path:
        from bench.paths import data_dir

        return data_dir()

    # Real-model runs use the methods' own (paper) hyper-parameters.
    train_profile: dict = {}


MODELS.add("llava-7b", HfLlava("llava-7b", "llava-hf/llava-1.5-7b-hf"))
MODELS.add("llava-13b", HfLlava("llava-13b", "llava-hf/llava-1.5-13b-hf"))


class LocalLlava(HfLlava):
    def __init__(self, path: str):
        super().__init__(Path(path).name, path)
        self.description = f"local llava-hf checkpoint {path}"
        self.env_var = None  # the folder itself is the local copy


def model_entry(name: str):
    """A registered model, ``openai:<name>`` (an API-served model), or a local llava-hf directory."""
    if is_api_model(name):
        return ApiModel(name)
    if name not in MODELS and Path(name).exists():
        return LocalLlava(name)
    return MODELS.get(name)


def apply_checkpoint(model: torch.nn.Module, ckpt: str | Path | None, stages: list[dict] | None = None):
    """Merge the adapters of ``ckpt`` (a loop checkpoint or a peft adapter dir) into ``model``."""
    from peft import PeftModel
    from safetensors.torch import load_file

    if ckpt is None:
        return model
    ckpt = Path(ckpt)
    if stages is None:
        if (ckpt / "adapter_config.json").exists():
            return PeftModel.from_pretrained(model, str(ckpt)).merge_and_unload()
        sfile = ckpt / "stages.json"
        if not sfile.exists():
            raise BenchError(f"{ckpt}: not a checkpoint (no stages.json or adapter_config.json)")
        stages = read_json(sfile)["stages"]
    for st in stages:
        sdir = ckpt / st["dir"]
        if (sdir / "adapter" / "adapter_config.json").exists():
            model = PeftModel.from_pretrained(model, str(sdir / "adapter")).merge_and_unload()
        extra = sdir / "non_lora_trainables.safetensors"
        if extra.exists():
            missing = model.load_state_dict(load_file(str(extra)), strict=False)
            if missing.unexpected_keys:
                raise BenchError(f"{extra}: unexpected keys {missing.unexpected_keys[:3]}")
    return model


def load_for_eval(model_name: str, adapter: str | None, dtype=torch.float32, device="cpu") -> tuple[Any, LlavaPreprocessor, Any]:
    entry = model_entry(model_name)
    model, processor = entry.load(dtype=dtype, device="cpu")
    if adapter is not None and not Path(adapter).exists():
        raise BenchError(f"{adapter}: adapter / checkpoint folder not found")
    model = apply_checkpoint(model, adapter)
    model.to(device).eval()
    return model, make_preprocessor(processor, model.config), entry
