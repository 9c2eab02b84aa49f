"""Every tensor of both real models dequantizes bit-exactly as gguf-py does, read through gguf's own reader."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from gguf import GGUFReader
from gguf.quants import dequantize as gguf_dequantize

from .helpers import assert_same_floats, load_registry

pytestmark = pytest.mark.slow
REGISTRY = load_registry()
CHUNK_ELEMENTS = 1 << 22  # compare big tensors (gemma's 262144-row embedding) a slice of rows at a time


def raw_rows(tensor) -> np.ndarray:
    """The tensor's bytes as (rows, row_bytes); the reader gives F32 tensors as float32."""
    data = np.asarray(tensor.data)
    return data.reshape(-1, data.shape[-1]).view(np.uint8)


def check_model(path, expected_types: set[str]) -> None:
    reader = GGUFReader(path)
    seen = collections.Counter()
    for tensor in reader.tensors:
        fmt = REGISTRY.format_by_type(int(tensor.tensor_type))
        assert fmt is not None, f"{tensor.name}: no plugin for {tensor.tensor_type.name}"
        assert fmt.name == tensor.tensor_type.name
        raw = raw_rows(tensor)
        n_cols = int(tensor.shape[0])  # ggml ne[0]: elements per row
        assert raw.shape[1] == fmt.row_bytes(n_cols)
        step = max(1, CHUNK_ELEMENTS // n_cols)
        for start in range(0, raw.shape[0], step):
            rows = raw[start:start + step]
            expected = np.asarray(gguf_dequantize(rows, tensor.tensor_type), dtype=np.float32)
            assert_same_floats(fmt.dequantize(rows), expected.reshape(len(rows), n_cols),
                               f"{tensor.name} rows {start}..")
        seen[fmt.name] += 1
    assert set(seen) == expected_types, seen


def test_gemma_3_270m(gemma_path):
    check_model(gemma_path, {"F32", "Q8_0", "Q5_0", "Q4_K", "Q6_K"})


def test_smollm2_135m(smollm2_path):
    check_model(smollm2_path, {"F32", "Q4_1", "Q8_0"})
