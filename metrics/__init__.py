"""Benchmark scorers: one module per benchmark, each registering its protocols in
``bench.registry.BENCHMARKS``."""

import importlib

for _name in ("pope", "chair", "shr", "mhalubench", "mmhal", "llava_bench", "amber", "objhal", "objhal_gpt"):
    try:
        importlib.import_module(f"metrics.{_name}")
    except ModuleNotFoundError as exc:  # a scorer module not written yet
        if exc.name != f"metrics.{_name}":
            raise
