"""BF16 (GGUF type 30): the top 16 bits of a float32.

Conversion from float32 is ggml_compute_fp32_to_bf16: round to nearest even, NaNs kept quiet."""

import numpy as np

from rocmforge_core import blocks as B
from rocmforge_core.hookspecs import hookimpl


def dequantize_blocks(b: np.ndarray) -> np.ndarray:
    return (b.view(np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def quantize_blocks(x: np.ndarray) -> np.ndarray:
    bits = x.view(np.uint32)
    nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    rounded = (bits.astype(np.uint64) + (np.uint64(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))) >> np.uint64(16)
    quiet = (bits >> np.uint32(16)) | np.uint32(64)
    return np.where(nan, quiet, rounded).astype(np.uint16).view(np.uint8)


def random_blocks(rng: np.random.Generator, n: int) -> np.ndarray:
    return quantize_blocks(rng.standard_normal((n, 1), dtype=np.float32))


@hookimpl
def register_formats(register):
    register(B.block_format(__file__, "BF16", 30, 1, 2, dequantize_blocks, random_blocks, quantize_blocks))
