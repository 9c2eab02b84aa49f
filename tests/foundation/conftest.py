"""Fixtures of the foundation tests. Registries here are built by hand (never from what happens to be installed),
so these tests depend on the core and the example plugin only."""

from __future__ import annotations

import importlib
import sys

import pytest

from rocmforge_core.registry import registry_in_use

from .helpers import EXAMPLE, add, reference_registry


@pytest.fixture(scope="session")
def example_plugin():
    """The example plugin's module, imported from its source directory (no install needed)."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        yield importlib.import_module("rocmforge_example_plugin")
    finally:
        sys.path.remove(str(EXAMPLE))


@pytest.fixture
def example_registry(example_plugin):
    """The reference backend plus the example plugin (format TQ2_0, kernel example.rmsnorm), installed as the
    process-wide registry while the test runs (host weights find their format through it)."""
    registry = reference_registry()
    add(registry, "example", example_plugin)
    with registry_in_use(registry):
        yield registry
