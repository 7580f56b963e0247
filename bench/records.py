"""Run records: ``run.json`` beside every train/eval output (format in docs/CONVENTIONS.md)."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.config import config_hash, to_dict
import json

from bench.io import atomic_write_json, read_json, sha256_file, sha256_text

PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "bench")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def git_info(cwd: Path | None = None) -> dict[str, Any]:
    cwd = cwd or Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return {"revision": None, "dirty": None}
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=5)
        return {"revision": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"revision": None, "dirty": None}


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{device}:{torch.cuda.get_device_name(0)}"
    return f"cpu:{platform.processor() or platform.machine()}"


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def file_hashes(paths: list[Path], root: Path | None = None) -> dict[str, str]:
    out = {}
    for p in paths:
        p = Path(p)
        if p.exists() and p.is_file():
            key = str(p.relative_to(root)) if root and p.is_relative_to(root) else p.name
            out[key] = sha256_file(p)
    return out


def new_record(kind: str, model: str, method: str, config: Any, seed: int, device: str, **extra: Any) -> dict:
    return {
        "kind": kind, "model": model, "method": method, "config": to_dict(config),
        "config_hash": config_hash(config), "seed": seed, "git": git_info(), "versions": versions(),
        "device": device_name(device), "started": now(), "wall_s": {}, "data_sha256": {}, **extra,
    }


def update_record(path: Path, updates: dict) -> dict:
    """Merge ``updates`` into an existing run.json (nested dicts merged one level) atomically."""
    path = Path(path)
    rec = read_json(path) if path.exists() else {}
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(rec.get(key), dict):
            rec[key] = {**rec[key], **value}
        else:
            rec[key] = value
    atomic_write_json(path, rec)
    return rec


def score_integrity(score: dict) -> str:
    """sha256 of a score file's content without its ``integrity`` field (canonical JSON of the JSON round trip,
    so the value written equals the value recomputed from the file). The leaderboard refuses a score file whose
    content no longer matches it (hand-edited values, a protocol relabelled)."""
    body = json.loads(json.dumps({k: v for k, v in score.items() if k != "integrity"}, default=str))
    return sha256_text(json.dumps(body, sort_keys=True, ensure_ascii=False))[:32]
