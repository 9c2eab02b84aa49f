"""Q5_0 (GGUF type 6): 32 weights in 22 bytes: fp16 scale d, 32 high bits qh (bit i for element i), 16 bytes
of low nibbles (elements 0-15 low, 16-31 high); x = d * ((low | high << 4) - 16)."""

import numpy as np

from rocmforge_core import blocks as B
from rocmforge_core.hookspecs import hookimpl


def dequantize_blocks(b: np.ndarray) -> np.ndarray:
    q = B.unpack_bits(b[:, 6:], 4, 16) | (B.unpack_bits(b[:, 2:6], 1, 1) << np.uint8(4))
    return B.f16(b, 0) * (q.astype(np.int8) - np.int8(16)).astype(np.float32)


def quantize_blocks(x: np.ndarray) -> np.ndarray:
    d = B.abs_max_signed(x) / np.float32(-16)
    q = np.minimum(np.trunc(x * B.inverse_or_zero(d) + np.float32(16.5)), 31).astype(np.uint8)
    return np.concatenate([B.f16_bytes(d), B.pack_bits(q >> 4, 1, 1), B.pack_bits(q & 15, 4, 16)], axis=1)


@hookimpl
def register_formats(register):
    register(B.block_format(__file__, "Q5_0", 6, 32, 22, dequantize_blocks,
                            B.random_blocks_with_f16(22, (0,), signed=(0,)), quantize_blocks,
                            repackers={"cpu": B.deferred("rocmforge_format_q5_0.cpu")}))
