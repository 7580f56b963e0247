"""Model entries (registry ``bench.models``), resolving ``--model``, and loading a checkpoint = base + adapters.

``--model`` is one of

* a registered name: ``llava-7b`` / ``llava-13b`` (``llava-hf/llava-1.5-{7b,13b}-hf``), ``llava-next-7b``
  (``llava-hf/llava-v1.6-vicuna-7b-hf``), ``qwen2-vl-7b`` / ``qwen2.5-vl-7b`` (``Qwen/Qwen2{,.5}-VL-7B-Instruct``),
  ``instructblip-7b`` / ``instructblip-13b`` (``Salesforce/instructblip-vicuna-{7b,13b}``), ``minigpt4-llama2-7b``
  (assembled from three downloads, :mod:`bench.models.assembly`), the embedded ``tiny-llava``;
* a local folder in a family's HF layout (``config.json`` + weights + processor files), e.g. one written by
  ``bench models make-tiny``;
* any hub id (``owner/name``), optionally at ``--revision``.

The family (prompt template, image preprocessing, forward) is chosen from ``config.json``'s ``model_type``
(:func:`bench.models.family.family_for_type`); an unsupported type is one error listing the supported ones.
Resolution never reaches the network: a hub id is looked up in the local HF cache only; a missing one fails at
once — before any data or work — with the download command,
and ``BENCH_MODEL_<NAME>`` (e.g. ``BENCH_MODEL_LLAVA_7B``; for a hub id, its name upper-cased with ``/``, ``-``
and ``.`` as ``_``) may point at a local copy. ``trust_remote_code`` is never set unless the caller passes it.
Each entry exposes ``resolved_revision`` (the hub commit of the snapshot used; ``None`` for local folders).

A checkpoint written by the loop is a folder with ``stages.json``; :func:`apply_checkpoint`
merges each finished stage's LoRA adapter (and trained projector) into the base in order.
A plain peft adapter folder (``adapter_config.json``) is accepted too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from bench.errors import BenchError, OfflineError
from bench.io import read_json
from bench.models import TinyLlava
from bench.models.api import ApiModel, is_api_model
from bench.models.assembly import download_hint
from bench.models.family import ModelFamily, family_for_type
from bench.paths import data_dir
from bench.registry import MODELS


def env_var_for(name: str) -> str:
    """``BENCH_MODEL_<NAME>``: the variable that points a model name or hub id at a local copy."""
    return "BENCH_MODEL_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def resolve_hub(repo_id: str, revision: str | None = None, env_var: str | None = None) -> tuple[Path, str | None]:
    """(local folder, resolved commit) of a hub checkpoint: ``$env_var`` if set, else the local HF cache. Runs
    never download weights implicitly (online or not): a model that is not here is an :class:`OfflineError` at
    once, naming the download command."""
    from huggingface_hub import snapshot_download

    env_var = env_var or env_var_for(repo_id)
    local = os.environ.get(env_var)
    if local:
        if not (Path(local) / "config.json").exists():
            raise BenchError(f"{env_var}={local}: not a checkpoint folder (no config.json)")
        return Path(local), None
    rev = f" --revision {revision}" if revision else ""
    hint = (f"download it on a connected machine with `hf download {repo_id}{rev}` (`huggingface-cli download"
            f" {repo_id}{rev}` with huggingface_hub < 1.0; then run with HF_HUB_OFFLINE=1), or point {env_var}"
            f" (or --model) at a local copy")
    try:
        path = Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except Exception:  # not in the cache (LocalEntryNotFoundError and friends)
        raise OfflineError(f"model {repo_id!r}{' at revision ' + revision if revision else ''} is not in the"
                           f" local Hugging Face cache (runs never download weights); {hint}") from None
    commit = path.name if re.fullmatch(r"[0-9a-f]{40}", path.name) else None
    return path, commit


def read_family(folder: Path) -> ModelFamily:
    cfg = folder / "config.json"
    if not cfg.exists():
        raise BenchError(f"{folder}: not a checkpoint folder (no config.json)")
    model_type = read_json(cfg).get("model_type")
    if not model_type:
        raise BenchError(f"{cfg}: no model_type")
    return family_for_type(model_type)


def load_folder(folder: Path, family: ModelFamily, dtype: torch.dtype = torch.float32, device: str = "cpu",
                trust_remote_code: bool = False):
    """(model, processor) of a local checkpoint folder with the family's transformers class."""
    kwargs: dict[str, Any] = {"local_files_only": True}
    if trust_remote_code:
        kwargs["trust_remote_code"] = True
    try:
        processor = family.load_processor(folder, **kwargs)
        model = family.model_class().from_pretrained(folder, dtype=dtype, **kwargs)
    except OSError as exc:
        raise BenchError(f"cannot load checkpoint {folder}: {str(exc).splitlines()[0]}") from None
    return model.to(device).eval(), processor


class HfModel:
    """A checkpoint on the hub or in a local folder; the family comes from its config.json."""

    version = "1"
    # Real-model runs use the methods' own (paper) hyper-parameters.
    train_profile: dict = {}

    def __init__(self, name: str, repo_id: str, description: str = "", revision: str | None = None,
                 trust_remote_code: bool = False):
        self.name, self.repo_id, self.ref = name, repo_id, name
        self.revision, self.trust_remote_code = revision, trust_remote_code
        self.description = description or f"{repo_id} (hub)"
        self.env_var = env_var_for(name)
        self._resolved: tuple[Path, str | None] | None = None

    def with_options(self, revision: str | None, trust_remote_code: bool) -> "HfModel":
        """A copy of this entry at ``revision`` / with ``trust_remote_code``."""
        if revision == self.revision and trust_remote_code == self.trust_remote_code:
            return self
        other = type(self)(self.name, self.repo_id, self.description, revision, trust_remote_code)
        other.train_profile = self.train_profile
        return other

    def resolve(self) -> Path:
        """The local folder (the env var's copy or the cached snapshot); raises at once when it is not here."""
        if self._resolved is None:
            self._resolved = resolve_hub(self.repo_id, self.revision, self.env_var)
        return self._resolved[0]

    @property
    def resolved_revision(self) -> str | None:
        """The hub commit of the snapshot in use (``None`` for a local copy given by the env var)."""
        self.resolve()
        return self._resolved[1]

    @property
    def family(self) -> ModelFamily:
        return read_family(self.resolve())

    def load(self, dtype: torch.dtype = torch.float32, device: str = "cpu"):
        folder = self.resolve()
        return load_folder(folder, read_family(folder), dtype, device, self.trust_remote_code)

    def missing_resources(self) -> list[str]:
        """Preflight: the weights are on this machine (checked when the entry is resolved, which fails at once
        with the download command otherwise); the folder must still hold a config."""
        folder = self.resolve()
        return [] if (folder / "config.json").is_file() else [f"model {self.name}: {folder} holds no config.json"]

    def weights_source(self) -> dict:
        """The hub id with the commit of the local snapshot in use, or ``{"path": folder}`` for a local copy
        (hashed by content in ``bench/fingerprint.py``); never the name alone."""
        folder = self.resolve()
        commit = self._resolved[1]
        if commit:
            return {"hub": self.repo_id, "revision": self.revision, "commit": commit}
        return {"path": str(folder)}

    def default_data_root(self) -> Path:
        return data_dir()


HfLlava = HfModel  # earlier name

MODELS.add("llava-7b", HfModel("llava-7b", "llava-hf/llava-1.5-7b-hf",
                               "LLaVA-1.5 7B (llava-hf/llava-1.5-7b-hf), vicuna_v1 template, pad-to-square"))
MODELS.add("llava-13b", HfModel("llava-13b", "llava-hf/llava-1.5-13b-hf",
                                "LLaVA-1.5 13B (llava-hf/llava-1.5-13b-hf), vicuna_v1 template, pad-to-square"))
MODELS.add("llava-next-7b", HfModel("llava-next-7b", "llava-hf/llava-v1.6-vicuna-7b-hf",
                                    "LLaVA-NeXT 7B (llava-hf/llava-v1.6-vicuna-7b-hf), chat template, any-res tiles"))

MODELS.add("qwen2-vl-7b", HfModel("qwen2-vl-7b", "Qwen/Qwen2-VL-7B-Instruct",
                                  "Qwen2-VL 7B Instruct (Qwen/Qwen2-VL-7B-Instruct), chatml, dynamic resolution"))
MODELS.add("qwen2.5-vl-7b", HfModel("qwen2.5-vl-7b", "Qwen/Qwen2.5-VL-7B-Instruct",
                                    "Qwen2.5-VL 7B Instruct (Qwen/Qwen2.5-VL-7B-Instruct), chatml, dynamic resolution"))


def _hadpo_profile(**train: Any) -> dict:
    """HA-DPO's recipe for its InstructBLIP / MiniGPT-4 runs (their READMEs @abdc44b): LoRA r 64, alpha 16 on the
    LLM's q/k/v projections, the projection frozen; global batch 32 (1 per GPU × 4 accumulation × 8 GPUs)."""
    return {"ha-dpo": {"train": {"lora_targets": ["q_proj", "k_proj", "v_proj"], "lora_r": 64, "lora_alpha": 16,
                                 "lora_dropout": 0.05, "train_projector": False, "batch_size": 1, "grad_accum": 32,
                                 **train}}}


for _size in ("7b", "13b"):
    _entry = HfModel(f"instructblip-{_size}", f"Salesforce/instructblip-vicuna-{_size}",
                     f"InstructBLIP Vicuna-{_size.upper()} (Salesforce/instructblip-vicuna-{_size}), bare-question"
                     " prompt, instruction-aware Q-Former (32 query tokens)")
    _entry.train_profile = _hadpo_profile(lr=4e-6, epochs=1, warmup_ratio=0.0)
    MODELS.add(_entry.name, _entry)


class AssembledMiniGPT4:
    """Entry ``minigpt4-llama2-7b``: a folder written by :func:`bench.models.assembly.assemble`, given by ``BENCH_MODEL_MINIGPT4_LLAMA2_7B``
    (runs never download or assemble implicitly; without it, resolution fails at once naming the downloads)."""

    version = "1"
    description = ("MiniGPT-4 Llama-2-7B chat (BLIP-2 ViT-g + Q-Former + llama_proj + Llama-2-7b-chat), assembled"
                   " locally by `bench models assemble-minigpt4`")

    def __init__(self, name: str = "minigpt4-llama2-7b", train_profile: dict | None = None):
        self.name = self.ref = name
        self.env_var = env_var_for(name)
        self.train_profile = train_profile or {}

    def resolve(self) -> Path:
        """The assembled folder named by the env var (read at every call, so the entry never goes stale)."""
        local = os.environ.get(self.env_var)
        if not local:
            raise OfflineError(f"model {self.name!r} is not on this machine (runs never download weights); "
                               + download_hint(self.env_var))
        folder = Path(local)
        if not (folder / "config.json").is_file():
            raise BenchError(f"{self.env_var}={local}: not a checkpoint folder (no config.json)")
        return folder

    resolved_revision = None

    @property
    def family(self) -> Any:
        return read_family(self.resolve())

    def load(self, dtype: Any = None, device: str = "cpu"):
        return load_folder(self.resolve(), self.family, dtype or torch.float32, device)

    def missing_resources(self) -> list[str]:
        return [] if (self.resolve() / "config.json").is_file() else [f"model {self.name}: no config.json"]

    def weights_source(self) -> dict:
        return {"path": str(self.resolve())}

    def default_data_root(self) -> Path:
        return data_dir()


MODELS.add("minigpt4-llama2-7b", AssembledMiniGPT4("minigpt4-llama2-7b", _hadpo_profile(lr=1e-4, max_steps=1000)))


TINY_MARKER = "bench_model.json"


class LocalModel(HfModel):
    """A checkpoint folder given as ``--model DIR``. A folder written by ``bench models make-tiny`` carries
    ``bench_model.json`` (``{"profile": "tiny"}``): it then trains and builds its methods' data like the
    embedded ``tiny-llava`` (same scale profile, pipelines on the synthetic world)."""

    def __init__(self, path: str, revision: str | None = None, trust_remote_code: bool = False):
        folder = Path(path).resolve()
        if revision:
            raise BenchError(f"--revision applies to hub ids, not to the local folder {folder}")
        super().__init__(folder.name, str(folder), f"local checkpoint {path}", None, trust_remote_code)
        self.ref = str(folder)
        self.folder = folder
        marker = folder / TINY_MARKER
        self.marker = read_json(marker) if marker.exists() else {}
        if self.marker.get("profile") == "tiny":
            self.train_profile = TinyLlava.train_profile
            self.pipeline_source = TinyLlava.pipeline_source
            self.default_benchmarks = TinyLlava.default_benchmarks

    def with_options(self, revision: str | None, trust_remote_code: bool) -> "LocalModel":
        if revision:
            raise BenchError(f"--revision applies to hub ids, not to the local folder {self.folder}")
        return self if trust_remote_code == self.trust_remote_code else LocalModel(str(self.folder), None, trust_remote_code)

    def resolve(self) -> Path:
        if self._resolved is None:
            read_family(self.folder)  # fail at once on a folder of an unsupported family
            self._resolved = (self.folder, None)
        return self.folder

    def default_data_root(self) -> Path:
        if self.marker.get("profile") == "tiny":
            return TinyLlava().default_data_root()
        return super().default_data_root()


LocalLlava = LocalModel  # earlier name

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_RESOLVED: dict[str, Any] = {}


def model_entry(name: str, revision: str | None = None, trust_remote_code: bool = False):
    """The entry for ``--model``: a registered name, a local checkpoint folder, or a hub id.

    Hub ids are resolved (found in the local cache, or downloaded when online) here, so that a missing model
    fails before any work. The first resolution of ``name`` with options (``--revision``,
    ``trust_remote_code``) is remembered for the process: later look-ups of the same string get that entry."""
    if is_api_model(name):  # an OpenAI-compatible endpoint (bench.models.api), evaluation only
        return ApiModel(name)
    if revision is None and not trust_remote_code and name in _RESOLVED:
        return _RESOLVED[name]
    if name in MODELS:
        entry = MODELS.get(name)
        if revision or trust_remote_code:
            if not hasattr(entry, "with_options"):
                raise BenchError(f"model {name!r} takes no --revision / trust_remote_code")
            entry = entry.with_options(revision, trust_remote_code)
    elif Path(name).exists():
        entry = LocalModel(name, revision, trust_remote_code)
    elif _HUB_ID.match(name) and not name.startswith((".", "/")):
        entry = HfModel(name, name, revision=revision, trust_remote_code=trust_remote_code)
    else:
        return MODELS.get(name)  # unknown name: the registry's error with close matches
    if hasattr(entry, "resolve"):
        entry.resolve()
    _RESOLVED[name] = entry
    return entry


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


def make_preprocessor(processor: Any, config: Any) -> Any:
    """The family preprocessor for a loaded checkpoint (family from ``config.model_type``)."""
    return family_for_type(config.model_type).make_preprocessor(processor, config)


def load_for_eval(model_name: str, adapter: str | None, dtype=torch.float32, device="cpu") -> tuple[Any, Any, Any]:
    entry = model_entry(model_name)
    model, processor = entry.load(dtype=dtype, device="cpu")
    if adapter is not None and not Path(adapter).exists():
        raise BenchError(f"{adapter}: adapter / checkpoint folder not found")
    model = apply_checkpoint(model, adapter)
    model.to(device).eval()
    return model, make_preprocessor(processor, model.config), entry
