"""Q8_0 (GGUF type 8): 32 weights in 34 bytes: fp16 scale d, then 32 int8 q; x = q * d."""

import numpy as np

from rocmforge_core import blocks as B
from rocmforge_core.hookspecs import hookimpl


def dequantize_blocks(b: np.ndarray) -> np.ndarray:
    return b[:, 2:].view(np.int8).astype(np.float32) * B.f16(b, 0)


def quantize_blocks(x: np.ndarray) -> np.ndarray:
    d = np.abs(x).max(axis=1, keepdims=True) / np.float32(127)
    q = B.round_half_away(x * B.inverse_or_zero(d)).astype(np.int8)
    return np.concatenate([B.f16_bytes(d), q.view(np.uint8)], axis=1)


@hookimpl
def register_formats(register):
    register(B.block_format(__file__, "Q8_0", 8, 32, 34, dequantize_blocks,
                            B.random_blocks_with_f16(34, (0,), signed=(0,)), quantize_blocks,
                            repackers={"cpu": B.deferred("rocmforge_format_q8_0.cpu")}))
