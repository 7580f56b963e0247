"""Imports flow one way: no cycle among the modules of ``bench``, ``methods`` and ``metrics``.

The graph is read from the source (AST), so it counts every import: module level, inside functions and
methods, under ``if TYPE_CHECKING``, relative ones. An edge goes from a module to the most specific project
module an import names (``from bench.data import fetch`` → ``bench.data.fetch``; ``from bench.io import
x`` → ``bench.io``; ``import bench.models`` → the package ``bench.models``). New modules are picked up
without editing this file.

The layers are the rows of the "Module map" table in docs/CONVENTIONS.md, top to bottom: a module may import
modules of its own row or of rows below it. A row names files (``bench/pipeline.py``) or folders
(``bench/train/``: every module under it); a file entry wins over a folder entry, a longer folder over a
shorter one. A module the table does not place fails the test, so a new top-level module gets a row.
"""

from __future__ import annotations

import ast
import re
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


def module_map(doc: Path = REPO / "docs" / "CONVENTIONS.md") -> list[tuple[str, list[str]]]:
    """(layer, [path entries]) for each row of the "Module map" table, top row first."""
    text = doc.read_text(encoding="utf-8")
    section = text[text.index("## Module map"):]
    section = section[:section.index("\n## ", 1)] if "\n## " in section[1:] else section
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not line.startswith("|") or set(cells[0]) <= {"-", " "} or cells[0] == "layer":
            continue
        rows.append((cells[0], re.findall(r"`([^`]+(?:\.py|/))`", cells[1])))
    return rows


def layer_of(module: str, rows: list[tuple[str, list[str]]]) -> int | None:
    """Row index of ``module``: an exact file entry, else the longest folder entry containing it."""
    best: tuple[int, int] | None = None  # (specificity, row)
    for i, (_, entries) in enumerate(rows):
        for entry in entries:
            if entry.endswith(".py"):
                name = entry[:-3].replace("/", ".")
                name = name[:-len(".__init__")] if name.endswith(".__init__") else name
                if name == module:
                    return i
            else:
                prefix = entry.rstrip("/").replace("/", ".")
                if module == prefix or module.startswith(prefix + "."):
                    if best is None or len(prefix) > best[0]:
                        best = (len(prefix), i)
    return None if best is None else best[1]


def test_no_import_cycle_among_project_modules():
    graph = import_graph()
    assert len(graph) > 50 and "bench.pipeline" in graph and "metrics.shr" in graph  # the walk found the project
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_flow_down_the_module_map_of_the_conventions():
    rows = module_map()
    assert len(rows) > 15 and rows[0][0].startswith("CLI") and rows[-1][0] == "bottom"
    graph = import_graph()
    unplaced = sorted(m for m in graph if layer_of(m, rows) is None)
    assert not unplaced, f"modules missing from the Module map table of docs/CONVENTIONS.md: {', '.join(unplaced)}"
    upward = [f"{m} ({rows[layer_of(m, rows)][0]}) imports {t} ({rows[layer_of(t, rows)][0]})"
              for m in sorted(graph) for t in sorted(graph[m]) if layer_of(t, rows) < layer_of(m, rows)]
    assert upward == [], "imports against the module map:\n" + "\n".join(upward)


def test_module_map_places_files_before_folders(tmp_path):
    doc = tmp_path / "CONVENTIONS.md"
    doc.write_text("# x\n\n## Module map\n\n| layer | modules | owns |\n| --- | --- | --- |\n"
                   "| top | `bench/cli.py` `bench/train/__init__.py` | a |\n| middle | `bench/train/` | b |\n"
                   "| bottom | `bench/` `bench/io.py` | c |\n\n## Next\n| not | `bench/x.py` | row |\n")
    rows = module_map(doc)
    assert [r[0] for r in rows] == ["top", "middle", "bottom"]
    assert layer_of("bench.cli", rows) == 0 and layer_of("bench.train", rows) == 0
    assert layer_of("bench.train.loop", rows) == 1 and layer_of("bench.io", rows) == 2
    assert layer_of("bench.x", rows) == 2 and layer_of("methods.dpo", rows) is None


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
