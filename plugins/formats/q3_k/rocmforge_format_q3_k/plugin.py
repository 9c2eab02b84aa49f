"""Q3_K (GGUF type 11): 256 weights in 110 bytes: 32 bytes hmask (high bit of each q, as 8 bit planes), 64
bytes of low 2-bit q (two halves of four 2-bit planes), 12 bytes of sixteen 6-bit scales, fp16 d;
x = (d * (scale - 32)) * (low - (high ? 0 : 4))."""

import numpy as np

from rocmforge_core import blocks as B
from rocmforge_core.hookspecs import hookimpl


def dequantize_blocks(b: np.ndarray) -> np.ndarray:
    scales = B.unpack_scales_6bit_16(b[:, 96:108]).astype(np.int8) - np.int8(32)
    low = B.unpack_bits(b[:, 32:96], 2, 32).astype(np.int8)
    no_high = B.unpack_bits(b[:, 0:32], 1, 32) ^ np.uint8(1)
    return B.grouped(B.f16(b, 108), scales, low - (no_high << np.uint8(2)).astype(np.int8))


@hookimpl
def register_formats(register):
    register(B.block_format(__file__, "Q3_K", 11, 256, 110, dequantize_blocks,
                            B.random_blocks_with_f16(110, (108,), signed=(108,), scale_range=B.SUPER_SCALES)))
