"""Q5_K (GGUF type 13): 256 weights in 176 bytes: fp16 d and dmin, 12 bytes of eight 6-bit scales and mins,
32 bytes qh (fifth bit of each q, as 8 bit planes), 128 bytes of low nibbles laid out as in Q4_K;
x = (d * scale) * (low | high << 4) - (dmin * min)."""

import numpy as np

from rocmforge_core import blocks as B
from rocmforge_core.hookspecs import hookimpl


def dequantize_blocks(b: np.ndarray) -> np.ndarray:
    sc, mn = B.unpack_scale_min_6bit(b[:, 4:16])
    q = B.unpack_bits(b[:, 48:176], 4, 32) | (B.unpack_bits(b[:, 16:48], 1, 32) << np.uint8(4))
    return B.grouped(B.f16(b, 0), sc, q, B.f16(b, 2), mn)


@hookimpl
def register_formats(register):
    register(B.block_format(__file__, "Q5_K", 13, 256, 176, dequantize_blocks,
                            B.random_blocks_with_f16(176, (0, 2), scale_range=B.SUPER_SCALES),
                            repackers={"cpu": B.deferred("rocmforge_format_q5_k.cpu")}))
