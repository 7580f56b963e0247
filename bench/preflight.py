"""Preflight: before any model is loaded, check everything a ``run``/``eval``/``train`` will need.

Each noun answers for itself — a benchmark protocol through ``Benchmark.missing_resources(data_root)``
(data files, NLTK packages, a judge's API key), a model entry through ``missing_resources()`` when it
declares one (weights not in the local cache, offline), a method through the training data it reads —
and this module only gathers the answers. Everything missing is reported in ONE error, one line per
item with how to get it, so a run never stops after an hour of generation for something knowable up
front. Nothing here downloads or loads weights.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterable

from bench.errors import BenchError
from bench.registry import BENCHMARKS


def model_problems(entry: Any, adapter: str | None = None) -> list[str]:
    out = list(entry.missing_resources()) if hasattr(entry, "missing_resources") else []
    if adapter is not None and not Path(adapter).exists():
        out.append(f"{adapter}: adapter / checkpoint folder not found")
    return out


def benchmark_problems(names: Iterable[str], data_root: Path) -> list[str]:
    out: list[str] = []
    for name in names:
        bench = BENCHMARKS.get(name)()
        for line in bench.missing_resources(Path(data_root)):
            out.append(line if line.startswith(name) else f"{name}: {line}")
    return out


BACKENDS = ("transformers", "vllm")


def _installed(name: str) -> bool:
    """Whether ``import name`` can succeed, without importing it (a module already imported counts)."""
    import importlib.util
    import sys

    if name in sys.modules:
        return sys.modules[name] is not None
    return importlib.util.find_spec(name) is not None

VLLM_MISSING = ("--backend vllm: the vllm package is not installed; install it with `pip install vllm` (needs a CUDA"
                " GPU), or use the default backend (--backend transformers), which needs nothing extra")


def backend_problems(backend: str, benchmarks: Iterable[str] = (), adapters: Iterable[str | None] = ()) -> list[str]:
    """What the ``--backend`` needs: ``transformers`` (the default) nothing; ``vllm`` the installed package (looked
    up, not imported), greedy or sampled protocols (no beam search) and no adapters (``bench.eval.vllm_backend``)."""
    if backend == "transformers":
        return []
    if backend not in BACKENDS:
        return [f"--backend {backend}: unknown backend (choose from {', '.join(BACKENDS)})"]
    out = []
    if not _installed("vllm"):
        out.append(VLLM_MISSING)
    for name in benchmarks:
        gen = BENCHMARKS.get(name).generation
        if gen.num_beams != 1:
            out.append(f"{name}: beam search (num_beams={gen.num_beams}) is not run by --backend vllm; drop it from"
                       " --benchmarks or use the default backend")
    for adapter in adapters:
        if adapter is not None:
            out.append(f"{adapter}: --backend vllm evaluates a merged folder, not an adapter; merge it with"
                       " `python -m bench export CHECKPOINT --out DIR` and pass --model DIR")
    return out


def output_problems(out: Path, need_bytes: int = 0) -> list[str]:
    """The output folder must be a writable folder (or creatable), with room for what will be written."""
    out = Path(out)
    probe = out
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return [f"{probe}: is a file; --out must name a folder"]
    if not os.access(probe, os.W_OK | os.X_OK):
        return [f"{probe}: not writable (--out)"]
    if need_bytes:
        free = shutil.disk_usage(probe).free
        if free < need_bytes:
            return [f"{probe}: {free / 2**30:.1f} GiB free, about {need_bytes / 2**30:.1f} GiB needed"]
    return []


def check(problems: list[str], what: str) -> None:
    """Raise one :class:`BenchError` listing every problem (nothing is started)."""
    if problems:
        lines = "\n".join(f"  - {p}" for p in dict.fromkeys(problems))
        raise BenchError(f"{what}: {len(problems)} missing or unusable resource(s); nothing was started:\n{lines}")
