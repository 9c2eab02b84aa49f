"""Q4_0 (GGUF type 2): 32 weights in 18 bytes: fp16 scale d, then 16 bytes of 4-bit q (low nibbles are
elements 0-15, high nibbles 16-31); x = d * (q - 8)."""

import numpy as np

from rocmforge_core import blocks as B
from rocmforge_core.hookspecs import hookimpl


def dequantize_blocks(b: np.ndarray) -> np.ndarray:
    q = B.unpack_bits(b[:, 2:], 4, 16).astype(np.int8) - np.int8(8)
    return B.f16(b, 0) * q.astype(np.float32)


def quantize_blocks(x: np.ndarray) -> np.ndarray:
    d = B.abs_max_signed(x) / np.float32(-8)
    q = np.minimum(np.trunc(x * B.inverse_or_zero(d) + np.float32(8.5)), 15).astype(np.uint8)
    return np.concatenate([B.f16_bytes(d), B.pack_bits(q, 4, 16)], axis=1)


@hookimpl
def register_formats(register):
    register(B.block_format(__file__, "Q4_0", 2, 32, 18, dequantize_blocks,
                            B.random_blocks_with_f16(18, (0,), signed=(0,)), quantize_blocks,
                            repackers={"cpu": B.deferred("rocmforge_format_q4_0.cpu")}))
