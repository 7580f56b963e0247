"""One generic registry type for every pluggable noun (methods, benchmarks, models, judges).

An entry declares its name once, as its ``name`` attribute, and registers under it::

    @METHODS.register
    class DpoMethod(Method):
        name = "dpo"

Discovery: :func:`discover` imports every module of a package (``methods/`` and ``metrics/`` call it from
their ``__init__``, so a new file there is found without editing any list), and third-party packages
register through Python entry points in the groups ``bench.methods``, ``bench.benchmarks``,
``bench.models`` and ``bench.judges`` (loaded lazily, the first time a registry is listed or looked up;
the entry point's name must be the object's declared ``name``). Two entries declaring the same name are
an error naming both, whichever way they were found.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from importlib import metadata
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar, overload

from bench.errors import BenchError

T = TypeVar("T")
_UNSET: Any = object()


def declared_name(obj: object) -> str | None:
    """The name an entry declares (its ``name`` attribute), or None when it declares none."""
    name = getattr(obj, "name", None)
    return name if isinstance(name, str) and name else None


def _where(obj: object) -> str:
    """``module.Qualname`` of a class (or of an instance's class), for error messages."""
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


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

    @overload
    def register(self, name_or_obj: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name_or_obj: T) -> T: ...

    def register(self, name_or_obj: Any) -> Any:
        """Decorator. ``@REG.register`` registers the object under its declared ``name``; ``@REG.register("x")``
        (for objects that declare no name) under ``"x"``. Re-registering a name is an error."""
        if not isinstance(name_or_obj, str):
            self.add(name_or_obj)
            return name_or_obj

        def decorate(obj: T) -> T:
            self.add(name_or_obj, obj)
            return obj

        return decorate

    def add(self, name_or_obj: Any, obj: Any = _UNSET) -> None:
        """``add(obj)``: register under the object's declared ``name``; ``add(name, obj)``: under ``name``, which
        must then equal the declared name when the object declares one. A name taken by another object is an
        error naming both."""
        if obj is _UNSET:
            obj, name = name_or_obj, declared_name(name_or_obj)
            if name is None:
                raise BenchError(f"{self.kind} {_where(obj)} declares no name (set its `name` attribute)")
        else:
            name = name_or_obj
            own = declared_name(obj)
            if own is not None and own != name:
                raise BenchError(f"{self.kind} {_where(obj)} declares name {own!r} but is registered as {name!r};"
                                 " the declared name is the registry key")
        existing = self._entries.get(name)
        if existing is not None and existing is not obj:
            raise BenchError(f"{self.kind} name {name!r} is registered twice: by {_where(existing)} and by"
                             f" {_where(obj)}; rename one of them")
        self._entries[name] = obj

    def _load_plugins(self) -> None:
        if self._plugins_loaded or self.entry_point_group is None:
            return
        self._plugins_loaded = True
        for ep in metadata.entry_points(group=self.entry_point_group):
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not break the harness
                raise BenchError(
                    f"plugin {ep.name!r} in entry-point group {self.entry_point_group!r} failed to load: {exc}"
                ) from exc
            own = declared_name(obj)
            if own is not None and own != ep.name:
                raise BenchError(f"plugin {ep.name!r} in entry-point group {self.entry_point_group!r} points at"
                                 f" {_where(obj)}, which declares name {own!r}: the entry point's name must be"
                                 " the declared name")
            self.add(ep.name, obj)  # a plugin that registered itself on import is the same object: no error

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


def discover(package: str, path: Iterable[str]) -> list[str]:
    """Import every module of ``package`` (a package's ``__name__`` and ``__path__``), in name order; modules
    whose name starts with ``_`` are skipped. Each module registers what it defines on import. Returns the
    module names imported. An import error propagates (a broken module must not vanish from ``bench list``)."""
    names = sorted(m.name for m in pkgutil.iter_modules(list(path)) if not m.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names


def describe(obj: object) -> tuple[str, str]:
    """(one-line description, version) of a registered entry, for ``bench list``."""
    doc = (getattr(obj, "description", None) or (obj.__doc__ or "")).strip().splitlines()
    version = str(getattr(obj, "version", "")) or "-"
    return (doc[0] if doc else ""), version


METHODS: Registry = Registry("method", "bench.methods")
BENCHMARKS: Registry = Registry("benchmark", "bench.benchmarks")
MODELS: Registry = Registry("model", "bench.models")
JUDGES: Registry = Registry("judge", "bench.judges")
