"""F32 (GGUF type 0): plain little-endian float32, one element per 4-byte "block"."""

import numpy as np

from rocmforge_core import blocks as B
from rocmforge_core.hookspecs import hookimpl


def dequantize_blocks(b: np.ndarray) -> np.ndarray:
    return b.view(np.float32)


def quantize_blocks(x: np.ndarray) -> np.ndarray:
    return x.view(np.uint8)


def random_blocks(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_normal((n, 1), dtype=np.float32).view(np.uint8)


@hookimpl
def register_formats(register):
    register(B.block_format(__file__, "F32", 0, 1, 4, dequantize_blocks, random_blocks, quantize_blocks,
                            repackers={"cpu": B.deferred("rocmforge_format_f32.cpu")}))
