"""Training methods: one module per method, each registering itself in ``bench.registry.METHODS``."""

import importlib

for _name in ("dpo", "ha_dpo", "povid", "hsa_dpo", "opa_dpo"):
    try:
        importlib.import_module(f"methods.{_name}")
    except ModuleNotFoundError as exc:  # a method module not written yet
        if exc.name != f"methods.{_name}":
            raise
