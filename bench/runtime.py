"""Where and how this process runs: device, dtype, rank / world size, and whether it is the main process.

One home for these decisions, used by the CLI, the pipeline, the eval engine's callers and the training loop:

* :func:`resolve_device` — ``auto`` → ``cuda`` when available, else ``cpu``; a device that is not there is a
  one-line :class:`~bench.errors.BenchError`.
* :func:`resolve_dtype` — ``auto`` → bfloat16 on CUDA, float32 elsewhere; :data:`DTYPES` names the choices.
* :func:`is_main_process` — rank 0 under ``accelerate launch``/torchrun, from the launcher's ``RANK``
  variable only (so it can be asked before accelerate's shared state exists; creating that state early would
  make a multi-process launch look single-process). Only the main process writes run records and tables.
* :func:`distributed_rank` — (rank, world size) of a data-parallel evaluation, initialising the process
  group when ``WORLD_SIZE`` > 1.
* :func:`keep_freed_memory` — glibc's allocator keeps freed heap memory for reuse instead of handing it back to
  the kernel (called by the CLI's run / eval / train / perf commands).

The training loop's collectives (sharding, means over processes, RNG states) stay in
:mod:`bench.train.distributed`; they need an ``accelerate.Accelerator``.
"""

from __future__ import annotations

import ctypes
import os
import platform

import torch
import torch.distributed as dist

from bench.errors import BenchError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; an unavailable device is a one-line error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = str(device).partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()):
        raise BenchError(f"--device {device!r}: expected auto, cpu, cuda, cuda:N or mps")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise BenchError(f"--device {device}: CUDA is not available here (torch {torch.__version__});"
                             " use --device cpu or --device auto")
        if index and int(index) >= torch.cuda.device_count():
            raise BenchError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BenchError(f"--device {device}: MPS is not available here; use --device cpu")
    return device


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """``auto`` → bfloat16 on CUDA, float32 elsewhere (CPU half precision is slow and changes outputs)."""
    if name == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if name not in DTYPES:
        raise BenchError(f"--dtype {name!r}: expected auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def is_main_process() -> bool:
    """True on the process that writes files: rank 0 under ``accelerate launch``/torchrun (the launcher's ``RANK``),
    and always when not launched distributed. Reads the environment only, so it is safe before accelerate's shared
    state exists (creating that state early would make a multi-process launch look single-process)."""
    return int(os.environ.get("RANK", "0")) == 0


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) under ``accelerate launch``/torchrun; initialises the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


MALLOC_MMAP_THRESHOLD = 32 << 20  # glibc's own ceiling for its dynamic threshold (64-bit)
MALLOC_TRIM_THRESHOLD = (1 << 31) - 1  # mallopt takes a C int: the largest one


def keep_freed_memory() -> bool:
    """Make glibc's ``malloc`` keep freed memory of the heap for reuse (``mallopt``: ``M_MMAP_THRESHOLD`` 32 MiB,
    ``M_TRIM_THRESHOLD`` 2 GiB); True when applied. No-op (False) off glibc, or with
    ``BENCH_KEEP_FREED_MEMORY=0``.

    Why: torch's CPU tensors come from ``malloc``. With glibc's defaults, freeing a tensor at the top of the heap
    hands its pages back to the kernel once more than the (dynamic) trim threshold is free, and the next tensor of
    that size takes a page fault on every 4 KiB it touches. The engine's prefill allocates and frees activations of
    10–50 MB per layer, and whether they land where glibc trims depends on the heap's history: on the 2-core CPU at
    the ``mid`` perf shape the same 32-caption engine run, repeated in one process, took between 55 thousand and
    770 thousand minor faults (up to 1.3 s of kernel time) and 4.9–5.3 s. With the thresholds fixed the pages stay
    with the process and are reused: 130 thousand faults in the first run (the heap grows once), 17–35 thousand
    after, and 4.5–5.0 s. Blocks over 32 MiB are still mapped and unmapped one by one, as glibc's defaults do at
    most. The price is that the process's resident memory stays at its high-water mark until it exits — what an
    evaluation or training process does anyway. Arithmetic is unchanged (torch aligns every CPU tensor to 64
    bytes wherever it is placed)."""
    if os.environ.get("BENCH_KEEP_FREED_MEMORY", "1") == "0" or platform.system() != "Linux":
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    # the mmap threshold first: setting either one turns glibc's dynamic adjustment of both off
    return bool(mallopt(m_mmap_threshold, MALLOC_MMAP_THRESHOLD)) and bool(
        mallopt(m_trim_threshold, MALLOC_TRIM_THRESHOLD))
