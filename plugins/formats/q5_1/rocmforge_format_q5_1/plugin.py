"""Q5_1 (GGUF type 7): 32 weights in 24 bytes: fp16 scale d, fp16 minimum m, 32 high bits qh, 16 bytes of
low nibbles (elements 0-15 low, 16-31 high); x = d * (low | high << 4) + m."""

import numpy as np

from rocmforge_core import blocks as B
from rocmforge_core.hookspecs import hookimpl


def dequantize_blocks(b: np.ndarray) -> np.ndarray:
    q = B.unpack_bits(b[:, 8:], 4, 16) | (B.unpack_bits(b[:, 4:8], 1, 1) << np.uint8(4))
    return B.f16(b, 0) * q.astype(np.float32) + B.f16(b, 2)


def quantize_blocks(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    d = (hi - lo) / np.float32(31)
    q = np.minimum(np.trunc((x - lo) * B.inverse_or_zero(d) + np.float32(0.5)), 31).astype(np.uint8)
    return np.concatenate([B.f16_bytes(d), B.f16_bytes(lo), B.pack_bits(q >> 4, 1, 1),
                           B.pack_bits(q & 15, 4, 16)], axis=1)


@hookimpl
def register_formats(register):
    register(B.block_format(__file__, "Q5_1", 7, 32, 24, dequantize_blocks,
                            B.random_blocks_with_f16(24, (0, 2), signed=(2,)), quantize_blocks,
                            repackers={"cpu": B.deferred("rocmforge_format_q5_1.cpu")}))
