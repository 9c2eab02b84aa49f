"""Q4_1 (GGUF type 3): 32 weights in 20 bytes: fp16 scale d, fp16 minimum m, 16 bytes of 4-bit q (low
nibbles are elements 0-15, high nibbles 16-31); x = d * q + m."""

import numpy as np

from rocmforge_core import blocks as B
from rocmforge_core.hookspecs import hookimpl


def dequantize_blocks(b: np.ndarray) -> np.ndarray:
    return B.f16(b, 0) * B.unpack_bits(b[:, 4:], 4, 16).astype(np.float32) + B.f16(b, 2)


def quantize_blocks(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    d = (hi - lo) / np.float32(15)
    q = np.minimum(np.trunc((x - lo) * B.inverse_or_zero(d) + np.float32(0.5)), 15).astype(np.uint8)
    return np.concatenate([B.f16_bytes(d), B.f16_bytes(lo), B.pack_bits(q, 4, 16)], axis=1)


@hookimpl
def register_formats(register):
    register(B.block_format(__file__, "Q4_1", 3, 32, 20, dequantize_blocks,
                            B.random_blocks_with_f16(20, (0, 2), signed=(2,)), quantize_blocks,
                            repackers={"cpu": B.deferred("rocmforge_format_q4_1.cpu")}))
