"""Q4_K (GGUF type 12): 256 weights in 144 bytes: fp16 d and dmin, 12 bytes of eight 6-bit scales and mins
(one pair per 32 weights), 128 bytes of 4-bit q (each 32 bytes: 32 weights in low nibbles, the next 32 in
high nibbles); x = (d * scale) * q - (dmin * min)."""

import numpy as np

from rocmforge_core import blocks as B
from rocmforge_core.hookspecs import hookimpl


def dequantize_blocks(b: np.ndarray) -> np.ndarray:
    sc, mn = B.unpack_scale_min_6bit(b[:, 4:16])
    return B.grouped(B.f16(b, 0), sc, B.unpack_bits(b[:, 16:144], 4, 32), B.f16(b, 2), mn)


@hookimpl
def register_formats(register):
    register(B.block_format(__file__, "Q4_K", 12, 256, 144, dequantize_blocks,
                            B.random_blocks_with_f16(144, (0, 2), scale_range=B.SUPER_SCALES),
                            repackers={"cpu": B.deferred("rocmforge_format_q4_k.cpu")}))
