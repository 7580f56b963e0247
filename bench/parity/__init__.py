"""Parity runner: run reference-output fixtures (the ``shared/parity`` layout) against our scorers.

``python -m bench parity DIR [--root ROOT]`` calls :func:`main_parity`: one line per case (``PASS name`` or
``FAIL name: first difference``), then ``N passed, M failed``; exit code 0 when every case passed (and at
least one ran), else 1.

Plug-in protocol. Each benchmark has a *discoverer* module ``bench.parity.<name>`` (listed in
``DISCOVERERS``) exposing ``discover(folder: Path, root: Path) -> list[Case]``. A discoverer scans
``folder`` recursively and claims the files it recognises by **file-name pattern** (then confirms by
content), never by a list of known case names, so held-out cases in the same format run the same way.
A :class:`Case` has a ``name`` and ``run() -> CaseResult``; ``CaseResult(name, ok, first_diff)``.
Modules are imported defensively: a discoverer module that does not exist is skipped silently; one
that fails to import, or whose ``discover`` raises, becomes a failed case; a case whose ``run`` raises
is a failed case with the exception as its first difference — the runner itself never crashes.

Repo-relative paths inside fixtures (``shared/reference/pope/coco_pope_random.json``) resolve against
ROOT: by default the parent of the nearest ancestor of ``folder`` named ``shared`` (or, failing that,
the nearest ancestor that contains a ``shared`` folder; else the working directory). Discoverers also
look beside the fixture (:func:`resolve_path`) so a copied fixture folder stays runnable.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

from bench.errors import BenchError

DISCOVERERS: tuple[str, ...] = ("pope", "chair", "shr", "mhalubench", "mmhal", "llava_bench", "amber", "objhal",
                                 "objhal_gpt")


@dataclass
class CaseResult:
    name: str
    ok: bool
    first_diff: str | None = None


@dataclass
class Case:
    name: str
    run: Callable[[], CaseResult]


# ---------------------------------------------------------------------------------------------- helpers
def default_root(folder: Path) -> Path:
    """The folder repo-relative fixture paths resolve against (see the module docstring)."""
    folder = Path(folder).resolve()
    chain = [folder, *folder.parents]
    for parent in chain:
        if parent.name == "shared":
            return parent.parent
    for parent in chain:
        if (parent / "shared").is_dir():
            return parent
    return Path.cwd()


def resolve_path(rel: str, root: Path, fixture: Path) -> Path:
    """``root/rel`` if it exists, else the same file name beside ``fixture``, else ``root/rel`` (for errors)."""
    p = Path(rel)
    candidates = [p] if p.is_absolute() else [Path(root) / p]
    candidates.append(Path(fixture).parent / p.name)
    for cand in candidates:
        if cand.exists():
            return cand
    return candidates[0]


def read_fixture_json(path: Path) -> Any:
    """A candidate fixture file's JSON, or None when it is unreadable or not JSON (discoverers skip it)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def case_name(prefix: str, path: Path, folder: Path) -> str:
    """``<prefix>/<path relative to folder>``, without a repeated leading ``<prefix>/`` folder."""
    try:
        rel = Path(path).resolve().relative_to(Path(folder).resolve()).as_posix()
    except ValueError:
        rel = Path(path).name
    if rel.startswith(prefix + "/"):
        rel = rel[len(prefix) + 1:]
    return f"{prefix}/{rel}"


def _fmt_path(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def first_difference(expected: Any, actual: Any, path: str = "", tol: float = 0.0) -> str | None:
    """Path and values of the first difference between two JSON-like values, or None.

    Dict keys are compared for the keys of ``expected`` (extra keys in ``actual`` are allowed); lists
    by length then element-wise; numbers within ``tol`` when either side is a float (bools are exact).
    """
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in expected:
            if key not in actual:
                return f"{_fmt_path(path, key)}: missing (expected {expected[key]!r})"
            diff = first_difference(expected[key], actual[key], _fmt_path(path, key), tol)
            if diff:
                return diff
        return None
    if isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple)):
        for i, (e, a) in enumerate(zip(expected, actual)):
            diff = first_difference(e, a, f"{path}[{i}]", tol)
            if diff:
                return diff
        if len(expected) != len(actual):
            return f"{path or 'value'}: length {len(actual)} != expected {len(expected)}"
        return None
    numeric = (int, float)
    if (isinstance(expected, float) or isinstance(actual, float)) and isinstance(expected, numeric) \
            and isinstance(actual, numeric) and not isinstance(expected, bool) and not isinstance(actual, bool):
        if expected == actual or abs(expected - actual) <= tol:
            return None
        return f"{path or 'value'}: {actual!r} != expected {expected!r} (|diff| {abs(expected - actual):.3g} > {tol:g})"
    if type(expected) is bool or type(actual) is bool:
        same = type(expected) is type(actual) and expected == actual
    else:
        same = expected == actual
    if not same:
        return f"{path or 'value'}: {actual!r} != expected {expected!r}"
    return None


# ---------------------------------------------------------------------------------------------- runner
def _failed(name: str, exc: BaseException) -> CaseResult:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" ({Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return CaseResult(name, False, f"raised {type(exc).__name__}: {exc}{where}")


def discover(folder: Path, root: Path, modules: tuple[str, ...] | None = None) -> list[Case]:
    """Every case the discoverer modules (default ``DISCOVERERS``) claim under ``folder``; broken modules
    become failed cases."""
    cases: list[Case] = []
    for mod_name in DISCOVERERS if modules is None else modules:
        full = f"{__name__}.{mod_name}"
        try:
            mod = importlib.import_module(full)
        except ModuleNotFoundError as exc:
            if exc.name == full:
                continue  # that benchmark's discoverer is not installed: nothing to run
            cases.append(Case(f"{mod_name}/<import>", lambda e=exc, n=mod_name: _failed(f"{n}/<import>", e)))
            continue
        except Exception as exc:  # a broken module is a failed case, not a crashed runner
            cases.append(Case(f"{mod_name}/<import>", lambda e=exc, n=mod_name: _failed(f"{n}/<import>", e)))
            continue
        try:
            found = list(mod.discover(Path(folder), Path(root)))
        except Exception as exc:
            cases.append(Case(f"{mod_name}/<discover>", lambda e=exc, n=mod_name: _failed(f"{n}/<discover>", e)))
            continue
        cases.extend(found)
    return cases


def run_parity(folder: Path, root: Path | None = None) -> list[CaseResult]:
    """Discover and run every case under ``folder``; ROOT defaults to :func:`default_root`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchError(f"parity folder not found: {folder}")
    root = Path(root) if root is not None else default_root(folder)
    results = []
    for case in discover(folder, root):
        try:
            result = case.run()
        except Exception as exc:
            result = _failed(case.name, exc)
        results.append(result)
    return results


def print_results(results: list[CaseResult], out: TextIO | None = None) -> None:
    """``PASS name`` / ``FAIL name: first diff`` per case, then ``N passed, M failed``."""
    out = out or sys.stdout
    for r in results:
        print(f"PASS {r.name}" if r.ok else f"FAIL {r.name}: {r.first_diff}", file=out)
    passed = sum(1 for r in results if r.ok)
    print(f"{passed} passed, {len(results) - passed} failed", file=out)


def main_parity(folder: Path, root: Path | None = None) -> int:
    """CLI entry: run, print, exit code 0 (all passed, at least one case) or 1."""
    results = run_parity(Path(folder), Path(root) if root is not None else None)
    if not results:
        print(f"no parity cases found under {folder}", file=sys.stderr)
    print_results(results)
    return 0 if results and all(r.ok for r in results) else 1
