"""Q6_K (GGUF type 14): 256 weights in 210 bytes: 128 bytes of low nibbles (each 64 bytes: 64 weights in low
nibbles, the next 64 in high nibbles), 64 bytes of high 2-bit pairs (two halves of four 2-bit planes),
sixteen int8 scales, fp16 d; x = (d * scale) * ((low | high << 4) - 32)."""

import numpy as np

from rocmforge_core import blocks as B
from rocmforge_core.hookspecs import hookimpl


def dequantize_blocks(b: np.ndarray) -> np.ndarray:
    q = B.unpack_bits(b[:, 0:128], 4, 64) | (B.unpack_bits(b[:, 128:192], 2, 32) << np.uint8(4))
    return B.grouped(B.f16(b, 208), b[:, 192:208].view(np.int8), q.astype(np.int8) - np.int8(32))


@hookimpl
def register_formats(register):
    register(B.block_format(__file__, "Q6_K", 14, 256, 210, dequantize_blocks,
                            B.random_blocks_with_f16(210, (208,), signed=(208,), scale_range=B.SUPER_SCALES),
                            repackers={"cpu": B.deferred("rocmforge_format_q6_k.cpu")}))
