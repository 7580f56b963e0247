"""Content fingerprints: the one place that says what a cached output depends on.

A cache may be reused only when everything that determines its content is in its key, and never a
name or a path. Two fingerprints are built here:

* :func:`checkpoint_fingerprint` — the *generating model*: the base weights by content (sha256 of every
  file of a local checkpoint folder, or the resolved commit of a hub snapshot), the adapters / trained
  projector of every stage (sha256 of the files that are loaded), the dtype, the device class
  (``cpu`` / ``cuda``: kernels differ), the backend (attention implementation and the engine's decode
  version). It keys predictions (``bench/eval/engine.py``) and the method-data generation caches.
  A model loaded in memory (no folder) is identified by :func:`state_fingerprint` (its tensors' bytes), an
  API-served one by :func:`api_fingerprint` (served name, base URL, request format: there are no weights).
* :func:`file_sha256` — the sha256 of one file, remembered by (resolved path, size, mtime) in
  ``<cache dir>/sha256.jsonl`` so a 14 GB checkpoint or 500 benchmark images are hashed once, not every
  run. The remembered value is used only while size and mtime are unchanged; a file rewritten in place
  gets a new mtime and is hashed again.

Hub ids are identified by the commit their local snapshot resolves to (``huggingface_hub`` reads the
local cache only, never the network); a new revision of the weights therefore has a new fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

from bench.io import sha256_file, sha256_text
from bench.paths import cache_dir

ENGINE_VERSION = "3"  # bump when the decoding code changes what it outputs for the same model and item
# 3: CPU float32 decode steps on prepacked linear weights (bench.eval.prepack): products may differ in the last bits

# Files of a checkpoint folder that do not change what the model computes.
_IGNORED_SUFFIXES = (".md", ".lock", ".tmp")
# ref_logps.* is the training loop's reference log-prob cache and its sidecar (whose data hash covers a data file
# that names absolute image paths): not loaded into the model, so the same adapter in another output folder keys
# the same predictions.
_IGNORED_NAMES = {"ref_logps.safetensors", "ref_logps.json", "state.pt", "log.jsonl", "DONE", "identity.json",
                  "run.json"}

_memo: dict[tuple[str, int, int], str] = {}
_loaded_from: str | None = None


def _cache_file() -> Path:
    return cache_dir() / "sha256.jsonl"


def _load_disk_cache() -> None:
    global _loaded_from
    path = _cache_file()
    if _loaded_from == str(path):
        return
    _loaded_from = str(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return
    for line in lines:
        try:
            rec = json.loads(line)
            _memo[(rec["path"], int(rec["size"]), int(rec["mtime_ns"]))] = str(rec["sha256"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn or foreign line is ignored: the file is only a hint


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of ``path``'s bytes, remembered by (resolved path, size, mtime_ns)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    _load_disk_cache()
    if key in _memo:
        return _memo[key]
    digest = sha256_file(p)
    _memo[key] = digest
    try:
        target = _cache_file()
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"path": key[0], "size": key[1], "mtime_ns": key[2], "sha256": digest}) + "\n")
    except OSError:
        pass  # a read-only cache folder only costs re-hashing next time
    return digest


def image_sha256(path: str | os.PathLike) -> str:
    """Content hash of a benchmark item's image; ``missing:<name>`` when it is absent (such items are skipped
    and never cached)."""
    try:
        return file_sha256(path)
    except OSError:
        return f"missing:{Path(path).name}"


def folder_files(folder: str | os.PathLike) -> list[Path]:
    """The files of a checkpoint folder that determine the model (recursively, sorted, no run state)."""
    folder = Path(folder)
    out = []
    for f in sorted(folder.rglob("*")):
        if not f.is_file() or f.name.startswith(".") or f.name in _IGNORED_NAMES or f.suffix in _IGNORED_SUFFIXES:
            continue
        if any(part.startswith(".") for part in f.relative_to(folder).parts):
            continue
        out.append(f)
    return out


def folder_fingerprint(folder: str | os.PathLike, files: Iterable[Path] | None = None) -> str:
    """sha256 over (relative name, content sha256) of the folder's model files."""
    folder = Path(folder)
    files = folder_files(folder) if files is None else list(files)
    parts = [f"{f.relative_to(folder).as_posix()}:{file_sha256(f)}" for f in files]
    return sha256_text("|".join(parts))


def hub_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The local snapshot folder of a hub repo (``.../snapshots/<commit>``), or None when not cached.
    Reads the local cache only."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        return None
    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    except Exception:  # noqa: BLE001 - any other hub error means "not available locally"
        return None


def weights_fingerprint(source: dict[str, Any]) -> str:
    """Fingerprint of a base model's weights from its source description.

    ``{"path": folder}`` → content hash of the folder's files; ``{"hub": repo_id, "revision": rev,
    "commit": sha}`` → ``hub:<repo>@<commit>`` (the commit names the exact files of the snapshot).
    """
    if source.get("path"):
        return "sha256:" + folder_fingerprint(source["path"])
    commit = source.get("commit")
    if not commit:
        raise ValueError(f"no commit for hub model {source.get('hub')!r}: cannot fingerprint its weights")
    return f"hub:{source['hub']}@{commit}"


def state_fingerprint(model: Any) -> str:
    """Weights of an in-memory ``torch.nn.Module`` by content: sha256[:16] over every parameter and buffer
    (name, dtype, shape, bytes), sorted by name (``bench.evaluate(model=<loaded model>)``)."""
    import torch  # on use only: this module also serves data commands that never load torch (start-up time)

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def api_fingerprint(served_name: str, base_url: str | None, request_format: str) -> str:
    """An API-served model (``openai:<name>``, no weights here): served name, base URL and the request format."""
    return sha256_text("|".join(["openai-api", request_format, served_name, base_url or ""]))[:16]


def adapter_files(adapter: str | os.PathLike | None) -> list[Path]:
    """Files of a loop checkpoint / peft adapter folder that are loaded into the model."""
    if not adapter:
        return []
    adapter = Path(adapter)
    if adapter.is_file():
        return [adapter]
    return [f for f in folder_files(adapter)
            if f.suffix in (".safetensors", ".bin", ".json") and f.name != "trainer_state.json"]


def checkpoint_fingerprint(weights_fp: str, adapter: str | os.PathLike | None, dtype: str, device: str,
                           backend: str) -> str:
    """Identity of the generating model: base weights, adapters (by content), dtype, device class, backend."""
    device_class = "cuda" if str(device).startswith("cuda") else str(device).split(":")[0]
    adapter_part = ""
    if adapter:
        adapter_part = folder_fingerprint(adapter, adapter_files(adapter)) if Path(adapter).is_dir() else \
            file_sha256(adapter)
    payload = json.dumps({"weights": weights_fp, "adapter": adapter_part, "dtype": dtype, "device": device_class,
                          "backend": backend, "engine": ENGINE_VERSION}, sort_keys=True)
    return sha256_text(payload)[:16]


def digest_of(values: Iterable[str]) -> str:
    """One sha256 over a sorted set of strings (e.g. the image hashes of a benchmark run)."""
    h = hashlib.sha256()
    for v in sorted(set(values)):
        h.update(v.encode())
        h.update(b"\n")
    return h.hexdigest()


def dtype_name(dtype: Any) -> str:
    """``torch.bfloat16`` → ``"bfloat16"`` (strings pass through)."""
    return str(dtype).replace("torch.", "")


def model_fingerprint(entry: Any, adapter: str | os.PathLike | None, dtype: Any, device: str, model: Any,
                      backend: str | None = None) -> tuple[str, dict]:
    """(checkpoint fingerprint, its parts for run.json) of a loaded model entry + adapter.

    ``entry.weights_source()`` says where the base weights come from (``{"path": folder}`` or
    ``{"hub": id, "commit": sha}``); the backend is transformers' attention implementation of ``model`` unless
    another engine is named (``vllm/<version>``: ``bench.eval.vllm_backend``), so backends never share a cache.
    """
    source = entry.weights_source()
    weights = weights_fingerprint(source)
    if backend is None:
        attn = getattr(getattr(model, "config", None), "_attn_implementation", None) or "default"
        backend = f"transformers/{attn}"
    fp = checkpoint_fingerprint(weights, adapter, dtype_name(dtype), device, backend)
    parts = {"weights": weights, "dtype": dtype_name(dtype), "backend": backend, "engine": ENGINE_VERSION,
             "device_class": "cuda" if str(device).startswith("cuda") else str(device).split(":")[0]}
    if source.get("hub"):
        parts["hub"] = {"id": source["hub"], "revision": source.get("revision"), "commit": source.get("commit")}
    return fp, parts
