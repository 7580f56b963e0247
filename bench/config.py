"""Typed configuration: dataclasses, YAML files and ``key=value`` overrides, with a stable hash.

Resolution order (later wins): dataclass defaults (each method's defaults cite its paper's
script) → the model's scale profile (e.g. ``tiny-llava`` trains with a larger learning rate and
a small LoRA so that CPU runs move the weights) → ``--config FILE.yaml`` → ``key=value``
overrides on the command line. Unknown keys anywhere are an error that names the key and the
known ones. ``config_hash`` is the sha256 of the canonical JSON of the resolved config.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Mapping

from bench.errors import BenchError
from bench.io import sha256_text


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, typ: Any, where: str) -> Any:
    """Convert a YAML/CLI value to the annotated field type (str → int/float/bool/list as needed)."""
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")) and type(None) in args:
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except (BenchError, ValueError, TypeError) as exc:
                errors.append(str(exc))
        raise BenchError(f"{where}: cannot interpret {value!r} as {typ}")
    if dataclasses.is_dataclass(typ):
        if isinstance(value, typ):
            return value
        if not isinstance(value, Mapping):
            raise BenchError(f"{where}: expected a mapping for {typ.__name__}, got {value!r}")
        return from_dict(typ, value, where=where)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v]
        inner = args[0] if args else Any
        items = [_coerce(v, inner, where) for v in value]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise BenchError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if typ is Any:
        return value
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise BenchError(f"{where}: expected true/false, got {value!r}")
    if typ in (int, float):
        if isinstance(value, bool):
            raise BenchError(f"{where}: expected {typ.__name__}, got {value!r}")
        try:
            out = typ(value)
        except (TypeError, ValueError):
            raise BenchError(f"{where}: expected {typ.__name__}, got {value!r}") from None
        if typ is int and isinstance(value, float) and not value.is_integer():
            raise BenchError(f"{where}: expected an integer, got {value!r}")
        return out
    if typ is str:
        return str(value)
    return value


def _unknown_keys(where: str, unknown: list[str], known: Any, cls_name: str) -> BenchError:
    """One-line error for unknown keys, with a did-you-mean per key."""
    import difflib

    hints = []
    for key in unknown:
        nested = [f"{name}.{key}" for name, typ in (known.items() if isinstance(known, Mapping) else [])
                  if dataclasses.is_dataclass(typ) and key in {f.name for f in dataclasses.fields(typ)}]
        close = nested or difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
        if close:
            hints.append(f"{key!r}: did you mean {close[0]!r}?")
    hint = (" (" + "; ".join(hints) + ")") if hints else ""
    return BenchError(f"{where}: unknown key(s) {unknown}{hint}; known keys of {cls_name}: {sorted(known)}")


def _build(cls: type, kwargs: dict, where: str) -> Any:
    """``cls(**kwargs)``; a validation error from the dataclass's ``__post_init__`` names ``where``."""
    try:
        return cls(**kwargs)
    except BenchError as exc:
        raise BenchError(f"{where}: {exc}") from None


def from_dict(cls: type, data: Mapping[str, Any], where: str = "config") -> Any:
    """Build dataclass ``cls`` from a mapping; unknown keys raise :class:`BenchError`."""
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise _unknown_keys(where, unknown, types_, cls.__name__)
    kwargs = {k: _coerce(v, types_[k], f"{where}.{k}") for k, v in data.items()}
    return _build(cls, kwargs, where)


def merge(obj: Any, updates: Mapping[str, Any], where: str = "config") -> Any:
    """A copy of dataclass ``obj`` with nested ``updates`` applied (unknown keys are errors)."""
    types_ = _field_types(type(obj))
    if not isinstance(updates, Mapping):
        raise BenchError(f"{where}: expected a mapping of settings, got {updates!r}")
    unknown = sorted(set(updates) - set(types_))
    if unknown:
        raise _unknown_keys(where, unknown, types_, type(obj).__name__)
    changes = {}
    for key, value in updates.items():
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            changes[key] = merge(current, value, f"{where}.{key}")
        elif isinstance(current, dict) and isinstance(value, Mapping):
            changes[key] = {**current, **value}
        else:
            changes[key] = _coerce(value, types_[key], f"{where}.{key}")
    try:
        return dataclasses.replace(obj, **changes)
    except BenchError as exc:
        raise BenchError(f"{where}: {exc}") from None


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["train.lr=1e-4", "seed=3"]`` → nested dict; values are parsed as YAML scalars."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise BenchError(f"override {pair!r} is not of the form key=value")
        key, raw = pair.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.exists():
        raise BenchError(f"{path}: config file not found")
    if not path.is_file():
        raise BenchError(f"{path}: --config must name a YAML file, not a folder")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise BenchError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except yaml.YAMLError as exc:
        raise BenchError(f"{path}: invalid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise BenchError(f"{path}: top level must be a mapping")
    return data


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def config_hash(obj: Any) -> str:
    return sha256_text(json.dumps(to_dict(obj), sort_keys=True, default=str))[:16]
