"""The core's modules import one another without cycles (function-level imports included; imports for type
checking only excluded), and the layers keep their direction: the scheduler never imports the engine, and ops,
program and formats import neither."""

from __future__ import annotations

import ast
from pathlib import Path

import rocmforge_core

ROOT = Path(rocmforge_core.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(("rocmforge_core",) + path.relative_to(ROOT).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = path
    return mods


def _type_checking(node) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree) -> list[str]:
    found = []
    todo = [tree]
    while todo:
        node = todo.pop()
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found += [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                found += [child.module] + [f"{child.module}.{a.name}" for a in child.names]
            todo.append(child)
    return found


def graph() -> dict[str, set[str]]:
    mods = _modules()
    edges = {}
    for name, path in mods.items():
        deps = {d for d in _imports(ast.parse(path.read_text())) if d in mods}
        # a package's own __init__ is not a dependency of its modules' content
        edges[name] = {d for d in deps if d != name and not name.startswith(d + ".")}
    return edges


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for dep in sorted(edges[node]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(dep):] + [dep]))
            if dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_layers_import_downwards_only():
    edges = graph()
    forbidden = {"rocmforge_core.scheduler": ("rocmforge_core.engine", "rocmforge_core.serve", "rocmforge_core.cli"),
                 "rocmforge_core.ops": ("rocmforge_core.engine", "rocmforge_core.scheduler", "rocmforge_core.registry"),
                 "rocmforge_core.program": ("rocmforge_core.engine", "rocmforge_core.scheduler"),
                 "rocmforge_core.formats": ("rocmforge_core.registry", "rocmforge_core.engine")}
    bad = [f"{m} imports {d}" for m, deps in edges.items() for layer, banned in forbidden.items()
           if m == layer or m.startswith(layer + ".") for d in deps if d.startswith(banned)]
    assert not bad, "\n".join(bad)
