"""Fixtures of the engine tests: tiny synthetic models and registries with a test backend."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rocmforge_core.models.synthetic import TinyConfig, write_model
from rocmforge_core.registry import PluginRecord, Registry

sys.path.insert(0, str(Path(__file__).parent))
from .boxed_backend import BoxedBackend, plugin  # noqa: E402


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("engine") / "tiny-llama.gguf"
    write_model(path, "llama", TinyConfig(n_layers=2, vocab_size=96, context_length=64, tied_output=False), seed=3)
    return path


def registry_with(backend: BoxedBackend) -> Registry:
    """The installed plugins (reference backend, formats, architectures) plus ``backend``."""
    registry = Registry()
    registry.load_entry_points()
    registry.add_plugin(plugin(backend), PluginRecord("boxed", "tests", "0", "boxed_backend"))
    return registry
