"""Imports flow one way: no cycle among the modules of ``bench``, ``methods`` and ``metrics``.

The graph is read from the source (AST), so it counts every import: module level, inside functions and
methods, under ``if TYPE_CHECKING``, relative ones. An edge goes from a module to the most specific project
module an import names (``from bench.data import fetch`` → ``bench.data.fetch``; ``from bench.io import
x`` → ``bench.io``; ``import bench.models`` → the package ``bench.models``). New modules are picked up
without editing this file. docs/CONVENTIONS.md ("Module map") says which module owns what.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "methods", "metrics")


def project_modules(repo: Path = REPO) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` file under the project packages."""
    mods: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((repo / pkg).rglob("*.py")):
            parts = path.relative_to(repo).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    """The longest prefix of dotted ``name`` that is a project module (None outside the project)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, mods: dict[str, Path]) -> set[str]:
    """Project modules that ``module`` imports anywhere in its source."""
    path = mods[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: level 1 = this package, 2 = its parent, ...
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # ``from pkg import sub`` names the submodule when there is one, else an attribute of ``base``
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in mods else base for alias in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name, mods)
            if target is not None and target != module:
                out.add(target)
    return out


def import_graph(repo: Path = REPO) -> dict[str, set[str]]:
    mods = project_modules(repo)
    return {m: imports_of(m, mods) for m in mods}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle ``[a, b, …, a]`` (depth-first search, deterministic order), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_no_import_cycle_among_project_modules():
    graph = import_graph()
    assert len(graph) > 50 and "bench.pipeline" in graph and "metrics.shr" in graph  # the walk found the project
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_reports_function_level_and_relative_imports(tmp_path):
    """The checker itself: a cycle hidden in a function body and closed by a relative import is named."""
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "bench" / "sub").mkdir()
    (tmp_path / "bench" / "sub" / "__init__.py").write_text("")
    (tmp_path / "bench" / "a.py").write_text("def f():\n    from bench.sub import b\n")
    (tmp_path / "bench" / "sub" / "b.py").write_text("from .c import g\n")
    (tmp_path / "bench" / "sub" / "c.py").write_text("from .. import a\n")
    (tmp_path / "metrics" / "m.py").write_text("import bench.sub.c\nfrom bench.a import f\n")
    graph = import_graph(tmp_path)
    assert graph["bench.a"] == {"bench.sub.b"} and graph["bench.sub.b"] == {"bench.sub.c"}
    assert graph["bench.sub.c"] == {"bench.a"} and graph["metrics.m"] == {"bench.sub.c", "bench.a"}
    assert find_cycle(graph) == ["bench.a", "bench.sub.b", "bench.sub.c", "bench.a"]
    (tmp_path / "bench" / "sub" / "c.py").write_text("import json\n")
    assert find_cycle(import_graph(tmp_path)) is None
