"""Fixtures of the engine tests: a tiny synthetic model, and that model loaded on the reference backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from rocmforge_core.engine.model import Model
from rocmforge_core.models.synthetic import TinyConfig, write_model


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("engine") / "tiny-llama.gguf"
    write_model(path, "llama", TinyConfig(n_layers=2, vocab_size=96, context_length=64, tied_output=False), seed=3)
    return path


@pytest.fixture(scope="module")
def model(tiny_llama):
    m = Model(tiny_llama, backend="reference")
    yield m
    m.close()
