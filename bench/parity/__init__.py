"""Parity runner: run the reference-output fixtures (``shared/parity`` layout) against our scorers.

``python -m bench parity DIR [--root ROOT]`` walks DIR; each benchmark's module in this package
(``pope``, ``chair``, ``shr``, ``mhalubench``) claims cases by *file-name patterns and content*,
never by a list of known case names, so held-out cases in the same formats run the same way.
Repo-relative paths inside fixtures (``shared/reference/...``) resolve against ROOT, by default
the folder that contains the ``shared`` folder holding DIR. One line per case, then
``N passed, M failed``; the exit code is 1 if any case failed.
"""

from __future__ import annotations

import importlib
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

MODULES = ("pope", "chair", "shr", "mhalubench")


@dataclass
class CaseResult:
    name: str
    ok: bool
    first_diff: str | None = None


@dataclass
class Case:
    name: str
    run: Callable[[], CaseResult]


def default_root(folder: Path) -> Path:
    folder = folder.resolve()
    for parent in [folder, *folder.parents]:
        if parent.name == "shared":
            return parent.parent
    return folder.parent


def discover(folder: Path, root: Path) -> list[Case]:
    cases: list[Case] = []
    for mod_name in MODULES:
        try:
            mod = importlib.import_module(f"bench.parity.{mod_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.parity.{mod_name}":
                continue
            raise
        cases.extend(mod.discover(folder, root))
    return cases


def run_parity(folder: Path, root: Path | None = None) -> list[CaseResult]:
    folder = Path(folder)
    root = Path(root) if root is not None else default_root(folder)
    results = []
    for case in discover(folder, root):
        try:
            results.append(case.run())
        except Exception as exc:  # a crashing case is a failed case, not a crashed runner
            tb = traceback.extract_tb(exc.__traceback__)[-1]
            results.append(CaseResult(case.name, False, f"raised {type(exc).__name__}: {exc} ({tb.filename}:{tb.lineno})"))
    return results


def main_parity(folder: Path, root: Path | None = None) -> int:
    results = run_parity(folder, root)
    for r in results:
        print(f"PASS {r.name}" if r.ok else f"FAIL {r.name}: {r.first_diff}")
    passed = sum(r.ok for r in results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if results and passed == len(results) else 1


def first_difference(expected, actual, path: str = "", tol: float = 0.0) -> str | None:
    """Path and values of the first difference between two JSON-like values (floats within ``tol``)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in expected:
            if key not in actual:
                return f"{path}.{key}: missing (expected {expected[key]!r})"
            diff = first_difference(expected[key], actual[key], f"{path}.{key}", tol)
            if diff:
                return diff
        return None
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return f"{path}: length {len(actual)} != expected {len(expected)}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            diff = first_difference(e, a, f"{path}[{i}]", tol)
            if diff:
                return diff
        return None
    if isinstance(expected, float) or isinstance(actual, float):
        if isinstance(expected, (int, float)) and isinstance(actual, (int, float)) and abs(expected - actual) <= tol:
            return None
        return f"{path}: {actual!r} != expected {expected!r}"
    if expected != actual:
        return f"{path}: {actual!r} != expected {expected!r}"
    return None
