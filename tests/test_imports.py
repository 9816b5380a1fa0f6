"""Dependencies point one way: the packages' layers, and no import cycle between modules.

Every production module is parsed (ast, nothing imported).  An import is every ``import`` or
``from ... import`` statement anywhere in the module: at the top, inside a function (a lazy import
is still a dependency) or under ``if TYPE_CHECKING:``.

* **Layers**: ``records <- concurrency <- mm <- actors <- workloads <- reports <- rmapsim <-
  benchmarks``.  A module may import its own package and the ones to its left, never one to its
  right; type-only imports count too.
* **Cycles**: no two modules import each other, directly or round a longer circle.  Imports under
  ``if TYPE_CHECKING:`` are left out here: they never run, and an observer's signature naming the
  class it observes (``Instrument.on_acquired(task: SimTask, ...)``) is what a typed hook is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.builds import COMPILED

# The sources are parsed: the compiled build's test run (.ci/test-compiled) has no sources of the
# compiled packages beside it, and the pure build's run checks the same files.
pytestmark = pytest.mark.skipif(COMPILED, reason="parses the sources, which the compiled build's run does not have")

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("records", "concurrency", "mm", "actors", "workloads", "reports", "rmapsim", "benchmarks")


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return "TYPE_CHECKING" in ast.unparse(test)


def _imports(name: str, path: Path) -> dict[str, bool]:
    """The project modules ``name`` imports -> True when only under ``if TYPE_CHECKING:``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, bool] = {}

    def add(target: str, type_only: bool) -> None:
        while target and target not in MODULES:  # `from a.b import c`: a.b.c if a module, else a.b
            target = target.rpartition(".")[0]
        if target and target != name:
            found[target] = found.get(target, True) and type_only

    def visit(node: ast.AST, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit_stmt(stmt, True)
                for stmt in child.orelse:
                    visit_stmt(stmt, type_only)
                continue
            visit_stmt(child, type_only)

    def visit_stmt(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, type_only)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                add(f"{module}.{alias.name}", type_only)
        else:
            visit(node, type_only)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_the_parser_sees_the_imports_it_must() -> None:
    """The checks below are only as good as the parse: known edges of each kind are found."""
    assert "concurrency.engine" in GRAPH["mm.system"]  # top level
    assert GRAPH["concurrency.lock"]["concurrency.engine"] is True  # type-only
    assert GRAPH["workloads.runner"]["mm.designs"] is False
    assert "mm.designs" in GRAPH["rmapsim.cli"]  # inside a function
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_import_points_down_the_layers() -> None:
    rank = {package: i for i, package in enumerate(LAYERS)}
    upward = [f"{name} imports {target}" for name, targets in sorted(GRAPH.items()) for target in sorted(targets)
              if rank[target.split(".")[0]] > rank[name.split(".")[0]]]
    assert upward == []


def test_no_import_cycles() -> None:
    runtime = {name: {t for t, type_only in targets.items() if not type_only} for name, targets in GRAPH.items()}
    assert _cycles(runtime) == []
