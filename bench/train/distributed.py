"""Data-parallel helpers of the shared loop (``accelerate launch`` / torchrun, one process per device).

Semantics: ``TrainConfig.batch_size`` is per process. Every process walks the same seeded permutation of the
records; each global micro-batch of ``batch_size × num_processes`` samples is cut into equal contiguous
shards, one per process (rank r takes shard r), and an epoch whose length is not a multiple of the process
count is padded by repeating its first samples (as ``torch.utils.data.DistributedSampler`` pads), so that
every process holds the same number of samples and the mean of the per-process gradients (what DDP
computes) is the gradient of the mean loss over the global micro-batch. With one process nothing changes.

Only the main process (:func:`bench.runtime.is_main_process`) writes files; logged metrics are means over
processes; a non-finite loss on any process stops every process (a lone ``raise`` would leave the others
waiting in the next all-reduce).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from bench.runtime import is_main_process  # noqa: F401  (its home is bench.runtime; the loop calls it as dist.is_main_process)


def shard(chunk: list[int], rank: int, world: int) -> list[int]:
    """Rank ``rank``'s contiguous, equal share of a global micro-batch (``len(chunk)`` divisible by ``world``)."""
    per = len(chunk) // world
    return chunk[rank * per : (rank + 1) * per]


def pad_to_multiple(order: list[int], world: int) -> list[int]:
    """``order`` padded by repeating its head so that its length is a multiple of ``world``."""
    if world <= 1 or not order:
        return order
    need = math.ceil(len(order) / world) * world - len(order)
    reps = math.ceil(need / len(order)) if need else 0
    return order + (order * reps)[:need]


def micro_batches_per_epoch(n: int, batch_size: int, world: int) -> int:
    """Micro-batches one process takes per epoch of ``n`` records."""
    return math.ceil(math.ceil(n / world) / batch_size)


def process_device(device: str) -> str:
    """The device this process trains on: ``cuda`` under a multi-process launch means this process's own GPU
    (``cuda:<local rank>``), not ``cuda:0`` for everyone."""
    if device != "cuda":
        return device
    from accelerate import PartialState

    return str(PartialState().device)


def any_process(accelerator: Any, flag: bool) -> bool:
    """True on every process when ``flag`` is true on at least one (a collective call with several processes)."""
    if accelerator.num_processes == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(t, "sum").item() > 0)


def mean_over_processes(accelerator: Any, values: dict[str, float]) -> dict[str, float]:
    """Per-process scalars averaged over processes (identical key order on every process required)."""
    if accelerator.num_processes == 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=accelerator.device)
    reduced = accelerator.reduce(t, "mean").tolist()
    return dict(zip(keys, reduced))


def gather_rng_states(accelerator: Any) -> list[torch.Tensor]:
    """Every process's torch CPU RNG state, in rank order (collective with several processes)."""
    state = torch.get_rng_state()
    if accelerator.num_processes == 1:
        return [state]
    from accelerate.utils import gather_object

    return list(gather_object([state]))


def restore_rng_state(rng: dict, rank: int, world: int) -> None:
    """Restore this process's RNG from a checkpoint's ``rng`` entry (per-process states when the process count
    matches, otherwise the main process's)."""
    per = rng.get("per_process")
    torch.set_rng_state(per[rank] if per and len(per) == world else rng["torch"])
