"""Q2_K (GGUF type 10): 256 weights in 84 bytes: 16 bytes of 4-bit scale (low nibble) and min (high nibble)
per 16 weights, 64 bytes of 2-bit q, fp16 super-scale d and super-min dmin;
x = (d * scale) * q - (dmin * min). Each 32-byte half of q holds 128 weights as four 2-bit planes."""

import numpy as np

from rocmforge_core import blocks as B
from rocmforge_core.hookspecs import hookimpl


def dequantize_blocks(b: np.ndarray) -> np.ndarray:
    sc = b[:, 0:16]
    return B.grouped(B.f16(b, 80), sc & np.uint8(0x0F), B.unpack_bits(b[:, 16:80], 2, 32),
                     B.f16(b, 82), sc >> np.uint8(4))


@hookimpl
def register_formats(register):
    register(B.block_format(__file__, "Q2_K", 10, 256, 84, dequantize_blocks,
                            B.random_blocks_with_f16(84, (80, 82), scale_range=B.SUPER_SCALES)))
