"""IQ4_NL (GGUF type 20): 32 weights in 18 bytes: fp16 scale d, 16 bytes of 4-bit indices (elements 0-15 in
low nibbles, 16-31 in high) into a non-linear code book; x = d * LEVELS[q]."""

import numpy as np

from rocmforge_core import blocks as B
from rocmforge_core.hookspecs import hookimpl

LEVELS = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.float32)


def dequantize_blocks(b: np.ndarray) -> np.ndarray:
    return B.f16(b, 0) * LEVELS.take(B.unpack_bits(b[:, 2:], 4, 16))


@hookimpl
def register_formats(register):
    register(B.block_format(__file__, "IQ4_NL", 20, 32, 18, dequantize_blocks,
                            B.random_blocks_with_f16(18, (0,), signed=(0,))))
