"""The engine and the server are libraries the CLI is built on: neither imports the CLI (backend choice and
thread set-up live in engine/backend_setup.py for all of them)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import rocmforge_core

CORE = Path(rocmforge_core.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("package", ["engine", "serve"])
def test_no_core_package_imports_the_cli(package):
    files = sorted((CORE / package).glob("*.py"))
    assert files
    offenders = {f.name: sorted(m for m in imported_modules(f) if m.split(".")[:2] == ["rocmforge_core", "cli"])
                 for f in files}
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_the_check_sees_a_function_level_import(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from rocmforge_core.cli.run import load_model\n")
    assert "rocmforge_core.cli.run" in imported_modules(source)
