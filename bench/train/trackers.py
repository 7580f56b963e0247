"""Optional experiment trackers of the shared loop (``TrainConfig.log_with``: ``tensorboard``, ``wandb`` or
both, comma-separated). They are handed to accelerate's ``Accelerator(log_with=…)`` only when their package
is importable; a missing one is a one-line error naming the package to install, never a silent no-op.
Trackers see exactly the rows of ``log.jsonl`` (loss, rewards/*, grad_norm, lr, pairs_per_s, peak memory)."""

from __future__ import annotations

import importlib.util

from bench.errors import BenchError

# tracker name → (importable module that must exist, pip package to install)
TRACKER_PACKAGES: dict[str, tuple[tuple[str, ...], str]] = {
    "tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"),
    "wandb": (("wandb",), "wandb"),
}


def parse_log_with(value: str | list[str] | None) -> list[str]:
    """``"tensorboard,wandb"`` / ``["wandb"]`` / ``None`` → list of tracker names (unknown names raise)."""
    if not value:
        return []
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    unknown = [n for n in names if n not in TRACKER_PACKAGES]
    if unknown:
        raise BenchError(f"log_with: unknown tracker(s) {unknown}; choose from {sorted(TRACKER_PACKAGES)}")
    return names


def check_trackers(names: list[str]) -> list[str]:
    """``names`` if every tracker's package is installed, else a BenchError naming the missing package."""
    for name in names:
        modules, package = TRACKER_PACKAGES[name]
        if not any(importlib.util.find_spec(m) is not None for m in modules):
            raise BenchError(f"log_with={name} needs the '{package}' package, which is not installed"
                             f" (pip install {package}) — or drop log_with")
    return names
