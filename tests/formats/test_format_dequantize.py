"""Every format's numpy dequantize is bit-exact with gguf-py's (and so with ggml) on random blocks."""

from __future__ import annotations

import numpy as np
import pytest
from gguf.quants import dequantize as gguf_dequantize

from rocmforge_core.blocks import RowSizeError
from rocmforge_core.errors import RocmforgeError

from .helpers import FORMATS, assert_same_floats, gguf_type, load_registry

REGISTRY = load_registry()


def oracle(name: str, raw: np.ndarray) -> np.ndarray:
    return np.asarray(gguf_dequantize(raw, gguf_type(name)), dtype=np.float32)


@pytest.mark.parametrize("name", FORMATS)
def test_random_blocks_are_valid(name):
    fmt = REGISTRY.format(name)
    blocks = fmt.random_blocks(np.random.default_rng(1), 500)
    assert blocks.dtype == np.uint8 and blocks.shape == (500, fmt.type_size)
    values = fmt.dequantize(blocks.reshape(-1))
    assert values.shape == (500 * fmt.block_size,)
    assert np.isfinite(values).all()
    assert np.count_nonzero(values) > values.size // 2  # scales are not all zero


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bit_exact_on_random_blocks(name, seed):
    fmt = REGISTRY.format(name)
    rng = np.random.default_rng(seed)
    rows, blocks_per_row = 37, 8 if fmt.block_size > 1 else 96
    raw = fmt.random_blocks(rng, rows * blocks_per_row).reshape(rows, blocks_per_row * fmt.type_size)
    values = fmt.dequantize(raw)
    assert values.shape == (rows, blocks_per_row * fmt.block_size)
    assert_same_floats(values, oracle(name, raw), name)


@pytest.mark.parametrize("name", FORMATS)
def test_bit_exact_on_arbitrary_bytes(name):
    """Any bytes at all, scales included (NaN, inf, subnormal): still exactly what ggml computes."""
    fmt = REGISTRY.format(name)
    raw = np.random.default_rng(7).integers(0, 256, size=(64, 4 * fmt.type_size), dtype=np.uint8)
    with np.errstate(all="ignore"):
        expected = oracle(name, raw)
        actual = fmt.dequantize(raw)
    assert_same_floats(actual, expected, name)


@pytest.mark.parametrize("name", FORMATS)
def test_leading_dimensions_are_kept(name):
    fmt = REGISTRY.format(name)
    raw = fmt.random_blocks(np.random.default_rng(3), 2 * 3 * 4).reshape(2, 3, 4 * fmt.type_size)
    values = fmt.dequantize(raw)
    assert values.shape == (2, 3, 4 * fmt.block_size)
    assert_same_floats(values.reshape(6, -1), oracle(name, raw.reshape(6, -1)), name)


def test_large_tensor_crosses_chunk_boundaries():
    """Dequantize walks big tensors in chunks; a tensor of many chunks with a ragged tail stays exact."""
    fmt = REGISTRY.format("Q4_K")
    raw = fmt.random_blocks(np.random.default_rng(4), 5001).reshape(1667 * 3, -1)
    assert_same_floats(fmt.dequantize(raw), oracle("Q4_K", raw), "Q4_K")


def test_mxfp4_every_exponent():
    fmt = REGISTRY.format("MXFP4")
    raw = fmt.random_blocks(np.random.default_rng(5), 256)
    raw[:, 0] = np.arange(256)
    with np.errstate(over="ignore"):
        assert_same_floats(fmt.dequantize(raw), oracle("MXFP4", raw), "MXFP4")


@pytest.mark.parametrize("name", ["Q4_0", "Q6_K", "F16"])
def test_row_size_must_hold_whole_blocks(name):
    fmt = REGISTRY.format(name)
    raw = np.zeros((4, fmt.type_size * 3 + 1), dtype=np.uint8)
    with pytest.raises(RowSizeError, match=rf"{name} rows must be a multiple of {fmt.type_size} bytes") as info:
        fmt.dequantize(raw)
    assert isinstance(info.value, RocmforgeError)
    assert str(fmt.type_size * 3 + 1) in str(info.value)


def test_dequantize_wants_raw_bytes():
    with pytest.raises(RowSizeError, match="Q8_0 data must be raw bytes"):
        REGISTRY.format("Q8_0").dequantize(np.zeros((2, 34), dtype=np.float32))
