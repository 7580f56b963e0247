"""One generic registry type for every pluggable noun (methods, benchmarks, models, judges).

In-tree entries register with a decorator::

    @METHODS.register("dpo")
    class DpoMethod: ...

Third-party packages register through Python entry points in the groups ``bench.methods``,
``bench.benchmarks``, ``bench.models`` and ``bench.judges``; an entry point's object is
loaded lazily the first time a registry is listed or looked up and is registered under
the entry point's name (unless it registered itself on import).
"""

from __future__ import annotations

import difflib
from importlib import metadata
from typing import Callable, Generic, Iterator, TypeVar

from bench.errors import BenchError

T = TypeVar("T")


class UnknownNameError(BenchError, KeyError):
    """Raised for a name that is not registered; the message suggests close matches."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class Registry(Generic[T]):
    """A name → entry mapping with decorator registration, entry points and did-you-mean errors."""

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, T] = {}
        self._plugins_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name``. Re-registering a name is an error."""

        def decorate(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorate

    def add(self, name: str, obj: T) -> None:
        existing = self._entries.get(name)
        if existing is not None and existing is not obj:
            raise BenchError(f"{self.kind} {name!r} is registered twice ({existing!r} and {obj!r})")
        self._entries[name] = obj

    def _load_plugins(self) -> None:
        if self._plugins_loaded or self.entry_point_group is None:
            return
        self._plugins_loaded = True
        for ep in metadata.entry_points(group=self.entry_point_group):
            if ep.name in self._entries:
                continue
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not break the harness
                raise BenchError(
                    f"plugin {ep.name!r} in entry-point group {self.entry_point_group!r} failed to load: {exc}"
                ) from exc
            if ep.name not in self._entries:
                self.add(ep.name, obj)

    def get(self, name: str) -> T:
        self._load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}{hint} (registered: {known})") from None

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._entries[n]) for n in self.names()]


def describe(obj: object) -> tuple[str, str]:
    """(one-line description, version) of a registered entry, for ``bench list``."""
    doc = (getattr(obj, "description", None) or (obj.__doc__ or "")).strip().splitlines()
    version = str(getattr(obj, "version", "")) or "-"
    return (doc[0] if doc else ""), version


METHODS: Registry = Registry("method", "bench.methods")
BENCHMARKS: Registry = Registry("benchmark", "bench.benchmarks")
MODELS: Registry = Registry("model", "bench.models")
JUDGES: Registry = Registry("judge", "bench.judges")
