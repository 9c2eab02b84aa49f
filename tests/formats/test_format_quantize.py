"""Every quantize is bit-exact with gguf-py's (ggml's reference quantizers), and round-trips within its error."""

from __future__ import annotations

import numpy as np
import pytest
from gguf.quants import quantize as gguf_quantize

from rocmforge_core.blocks import RowSizeError
from rocmforge_core.ops import nmse

from .helpers import QUANTIZABLE, gguf_type, load_registry

REGISTRY = load_registry()

# nmse of dequantize(quantize(x)) for normal data: a loose bound per format that a wrong layout cannot meet
ROUND_TRIP_NMSE = {"F32": 0.0, "F16": 1e-6, "BF16": 1e-4, "Q8_0": 1e-4, "Q5_0": 3e-3, "Q5_1": 3e-3,
                   "Q4_0": 1e-2, "Q4_1": 1e-2, "MXFP4": 5e-2}


def sample(rng: np.random.Generator, block_size: int, scale: float) -> np.ndarray:
    """Rows of normal data with the cases quantizers get wrong: zero rows, zero blocks, single zeros, constant
    rows, one outlier per block, ties in magnitude between a positive and a negative value."""
    x = (rng.standard_normal((24, 16 * block_size)) * scale).astype(np.float32)
    x[0] = 0
    x[1, :block_size] = 0
    x[2, ::7] = 0
    x[3] = np.float32(scale)
    x[4, ::block_size] *= 50
    x[5, 0], x[5, 1] = np.float32(scale), -np.float32(scale)
    x[6] = -np.abs(x[6])
    x[7] = np.abs(x[7])
    return x


def oracle(name: str, x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(gguf_quantize(x, gguf_type(name))).view(np.uint8)


@pytest.mark.parametrize("name", QUANTIZABLE)
@pytest.mark.parametrize("scale", [1e-7, 1e-3, 0.05, 1.0, 300.0, 6e4])
def test_bit_exact_with_gguf(name, scale):
    fmt = REGISTRY.format(name)
    x = sample(np.random.default_rng(int(scale * 1e7) % 2**32), fmt.block_size, scale)
    with np.errstate(over="ignore"):
        expected = oracle(name, x)
        actual = fmt.quantize(x)
    assert actual.dtype == np.uint8
    assert actual.shape == (x.shape[0], x.shape[1] // fmt.block_size * fmt.type_size)
    mismatch = np.argwhere(actual != expected)
    assert mismatch.size == 0, f"{name}: {len(mismatch)} bytes differ, first at {tuple(mismatch[0])}"


@pytest.mark.parametrize("name", QUANTIZABLE)
def test_round_trip_error(name):
    fmt = REGISTRY.format(name)
    x = np.random.default_rng(11).standard_normal((64, 8 * fmt.block_size)).astype(np.float32)
    back = fmt.dequantize(fmt.quantize(x))
    assert nmse(back, x) <= ROUND_TRIP_NMSE[name]
    assert np.all(fmt.dequantize(fmt.quantize(np.zeros_like(x))) == 0)


@pytest.mark.parametrize("name", QUANTIZABLE)
def test_quantize_keeps_leading_dimensions(name):
    fmt = REGISTRY.format(name)
    x = np.random.default_rng(12).standard_normal((2, 3, 2 * fmt.block_size)).astype(np.float32)
    q = fmt.quantize(x)
    assert q.shape == (2, 3, 2 * fmt.type_size)
    assert np.array_equal(q.reshape(6, -1), oracle(name, x.reshape(6, -1)))


def test_row_length_must_hold_whole_blocks():
    with pytest.raises(RowSizeError, match="Q4_0 rows must be a multiple of 32 elements, got rows of 40"):
        REGISTRY.format("Q4_0").quantize(np.zeros((2, 40), dtype=np.float32))


@pytest.mark.parametrize("name", ["F32", "F16", "BF16"])
def test_float_formats_convert_special_values_as_ggml(name):
    special = np.array([np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-40, -1e-45, 3.4e38, 65519.0, 65520.0,
                        1.0 + 2**-8, 1.0 + 3 * 2**-8, 1.0 + 2**-8 + 2**-20, 5.96e-8, 2.98e-8], dtype=np.float32)
    special = np.concatenate([special, np.frombuffer(np.array([0x7F800001, 0xFFC00001, 0x7FBFFFFF],
                                                              dtype=np.uint32).tobytes(), dtype=np.float32)])
    fmt = REGISTRY.format(name)
    with np.errstate(all="ignore"):
        expected = oracle(name, special[None])
        actual = fmt.quantize(special[None])
    assert np.array_equal(actual, expected)
