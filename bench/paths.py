"""Where data and caches live: ``$BENCH_DATA_DIR`` (default ``~/.cache/bench/data``)."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    env = os.environ.get("BENCH_DATA_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bench" / "data"


def cache_dir() -> Path:
    return data_dir().parent / "cache"
