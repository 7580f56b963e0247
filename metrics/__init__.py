"""Benchmark scorers: one module per benchmark, each registering its protocols in
``bench.registry.BENCHMARKS`` (keyed by each protocol's ``name``). Every module of this package is
imported (:func:`bench.registry.discover`): a new ``metrics/<file>.py`` is found without editing a list."""

from bench.registry import discover

discover(__name__, __path__)
