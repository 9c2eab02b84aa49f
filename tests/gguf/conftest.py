"""Fixtures of the GGUF tests: small files written with gguf's GGUFWriter, and the real files in ../shared."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE / "fuzz")]  # gguf_samples (the writer helpers), gguf_fuzz_harness

from gguf_samples import every_value_type_kv, write_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("gguf") / "tiny.gguf", extra_kv=every_value_type_kv())


@pytest.fixture(scope="session")
def vocab_files(testdata) -> list[Path]:
    files = sorted((testdata / "vocab").glob("*.gguf"))
    assert files, "../shared/testdata/vocab has no .gguf files"
    return files


@pytest.fixture
def tiny_bytes(tiny_model) -> bytearray:
    return bytearray(tiny_model.read_bytes())
