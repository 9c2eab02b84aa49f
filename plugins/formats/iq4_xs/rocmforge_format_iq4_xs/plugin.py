"""IQ4_XS (GGUF type 23): 256 weights in 136 bytes: fp16 d, 2 bytes of high 2-bit scale parts, 4 bytes of
low scale nibbles (eight 6-bit scales, one per 32 weights), 128 bytes of 4-bit indices (each 16 bytes: 16
weights in low nibbles, the next 16 in high) into IQ4_NL's code book; x = (d * (scale - 32)) * LEVELS[q]."""

import numpy as np

from rocmforge_core import blocks as B
from rocmforge_core.hookspecs import hookimpl

LEVELS = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.float32)


def dequantize_blocks(b: np.ndarray) -> np.ndarray:
    scales = B.unpack_bits(b[:, 4:8], 4, 1) | (B.unpack_bits(b[:, 2:4], 2, 1) << np.uint8(4))
    levels = LEVELS.take(B.unpack_bits(b[:, 8:136], 4, 16))
    return B.grouped(B.f16(b, 0), scales.astype(np.int8) - np.int8(32), levels)


@hookimpl
def register_formats(register):
    register(B.block_format(__file__, "IQ4_XS", 23, 256, 136, dequantize_blocks,
                            B.random_blocks_with_f16(136, (0,), signed=(0,), scale_range=B.SUPER_SCALES)))
