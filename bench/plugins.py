"""Load the in-tree registrations: model entries, methods, benchmarks (metrics) and judges.

Importing these packages fills the registries of :mod:`bench.registry` (``METHODS``, ``BENCHMARKS``,
``MODELS``, ``JUDGES``). Every verb calls :func:`load_plugins` before it resolves a name; it is cheap after the
first call (the modules are already imported).
"""

from __future__ import annotations


def load_plugins() -> None:
    """Import in-tree registrations (methods, metrics, models, judges)."""
    # imported on call, not at module level: registration is the job of this function, and ``bench --help`` /
    # ``bench list`` stay fast until a verb needs the registries (CLI start-up time)
    import bench.models  # noqa: F401
    import bench.models.loading  # noqa: F401
    import methods  # noqa: F401
    import metrics  # noqa: F401
    import bench.judges  # noqa: F401
