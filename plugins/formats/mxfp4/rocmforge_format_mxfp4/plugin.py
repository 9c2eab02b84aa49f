"""MXFP4 (GGUF type 39, OCP microscaling): 32 weights in 17 bytes: an E8M0 exponent e, then 16 bytes of 4-bit
E2M1 codes (elements 0-15 in low nibbles, 16-31 in high). ggml keeps the E2M1 levels doubled as integers and
halves the scale instead: x = 2^(e-128) * LEVELS[q]."""

import numpy as np

from rocmforge_core import blocks as B
from rocmforge_core.hookspecs import hookimpl

LEVELS = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], dtype=np.float32)


def half_scale(e: np.ndarray) -> np.ndarray:
    """ggml_e8m0_to_fp32_half: 2^(e-128) as float32 bits (subnormal for e < 2)."""
    e = e.astype(np.uint32)
    bits = np.where(e < 2, np.uint32(0x00200000) << e, (e - np.uint32(1)) << np.uint32(23))
    return bits.astype(np.uint32).view(np.float32)


def dequantize_blocks(b: np.ndarray) -> np.ndarray:
    return half_scale(b[:, 0:1]) * LEVELS.take(B.unpack_bits(b[:, 1:], 4, 16))


def quantize_blocks(x: np.ndarray) -> np.ndarray:
    amax = np.abs(x).max(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        e = np.where(amax > 0, np.floor(np.log2(amax)) - 2 + 127, 0)
    e = np.clip(e, 0, 255).astype(np.uint8)
    err = np.abs(half_scale(e)[:, :, None] * LEVELS - x[:, :, None])  # first best level wins ties, as in ggml
    q = err.argmin(axis=2).astype(np.uint8)
    return np.concatenate([e, B.pack_bits(q, 4, 16)], axis=1)


def random_blocks(rng: np.random.Generator, n: int) -> np.ndarray:
    blocks = rng.integers(0, 256, size=(n, 17), dtype=np.uint8)
    blocks[:, 0] = rng.integers(127 - 14, 127 + 3, size=n)  # scales from 2^-15 to 2^1
    return blocks


@hookimpl
def register_formats(register):
    register(B.block_format(__file__, "MXFP4", 39, 32, 17, dequantize_blocks, random_blocks, quantize_blocks))
