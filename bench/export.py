"""``bench export CHECKPOINT --out DIR``: a bench checkpoint as one merged, standalone HF model folder.

A checkpoint written by the training loop is the base model plus, per finished stage (``stages.json``, in
order), a peft LoRA adapter and optionally the trained projector / language-model weights
(``non_lora_trainables.safetensors``). Export rebuilds exactly what evaluation uses —
:func:`bench.models.loading.apply_checkpoint` on the base in float32: each stage's adapter merged
(``W + B·A·alpha/r``, peft's ``merge_and_unload``), then that stage's trained weights loaded — and saves the
result with ``save_pretrained`` (safetensors) in the family's HF layout (``config.json``,
``model.safetensors``, ``generation_config.json``) with the base's processor and tokenizer beside it. The
folder loads with the family's ``from_pretrained`` (``LlavaForConditionalGeneration`` for LLaVA-1.5), so
other harnesses (lmms-eval, VLMEvalKit) can score a bench-trained model, and ``bench eval --model DIR``
gives the predictions of ``bench eval --adapter CHECKPOINT`` (float32 export: identical weights).

``bench_export.json`` in the folder records the source checkpoint, the base model, the merged stages, the
sha256 of every checkpoint file merged, the dtype and the versions. The folder is written under a
temporary name and renamed when complete; an existing non-empty ``--out`` is refused.

The base model comes from ``--model`` or, when omitted, from the ``run.json`` the loop wrote beside the
checkpoint. ``--dtype`` (default float32) casts the merged weights before saving (bfloat16/float16 halve the
folder; the merge itself is always float32). Merging needs the full model in CPU memory (≈ 4 bytes per
parameter).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from bench.errors import BenchError
from bench.io import atomic_write_json, read_json, sha256_file
from bench.models.loading import apply_checkpoint, model_entry
from bench.records import git_info, now, versions

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
EXPORT_RECORD = "bench_export.json"


def checkpoint_stages(ckpt: Path) -> list[dict]:
    """The finished stages of a loop checkpoint (``[]`` for a plain peft adapter folder)."""
    if (ckpt / "stages.json").exists():
        return list(read_json(ckpt / "stages.json").get("stages", []))
    if (ckpt / "adapter_config.json").exists():
        return []
    raise BenchError(f"{ckpt}: not a bench checkpoint (no stages.json or adapter_config.json)")


def base_model_of(ckpt: Path, model: str | None) -> str:
    if model:
        return model
    run = ckpt.parent / "run.json"
    if run.exists():
        name = read_json(run).get("model")
        if name:
            return str(name)
    raise BenchError(f"{ckpt}: cannot tell its base model (no run.json beside it); pass --model NAME|DIR")


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, model: str | None = None,
                      dtype: str = "float32") -> dict[str, Any]:
    """Merge ``checkpoint`` into its base and save a standalone HF folder at ``out``; returns the export record."""
    ckpt, out = Path(checkpoint), Path(out)
    if not ckpt.is_dir():
        raise BenchError(f"{ckpt}: checkpoint folder not found")
    if dtype not in DTYPES:
        raise BenchError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BenchError(f"{out}: exists and is not empty; choose a new --out")
    stages = checkpoint_stages(ckpt)
    base_name = base_model_of(ckpt, model)
    entry = model_entry(base_name)
    if getattr(entry, "api_served", False):
        raise BenchError(f"{base_name}: an API-served model has no weights here to export")
    base, processor = entry.load(dtype=torch.float32, device="cpu")
    merged = apply_checkpoint(base, ckpt)
    merged.to(DTYPES[dtype]).eval()
    files = sorted(f for f in ckpt.rglob("*.safetensors") if "ref_logps" not in f.name)
    files += sorted(ckpt.rglob("adapter_config.json"))
    record = {"kind": "export", "source": str(ckpt), "base_model": base_name, "model_class": type(merged).__name__,
              "stages": [st["name"] for st in stages], "dtype": dtype,
              "merged_files_sha256": {str(f.relative_to(ckpt)): sha256_file(f) for f in files},
              "git": git_info(), "versions": versions(), "date": now()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.export-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        merged.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        atomic_write_json(tmp / EXPORT_RECORD, record)
        if out.exists():
            out.rmdir()  # empty (checked above)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return record
