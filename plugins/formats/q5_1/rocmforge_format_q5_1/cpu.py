"""Q5_1 for the cpu backend: the 5-bit values widened to bytes; fp16 scales and minimums to float32."""

import numpy as np

from rocmforge_core import blocks as B
from rocmforge_core.hookspecs import hookimpl

try:
    from rocmforge_cpu_simd import quantized as Q
except ImportError:  # the cpu backend is not installed: nothing to register
    Q = None


def repack(weight):
    """GGUF blocks -> the cpu backend's "cpu.i8" layout (see rocmforge_cpu_simd.quantized)."""
    b = Q.blocks_of(weight, 24)
    q = B.unpack_bits(b[:, 8:], 4, 16) | (B.unpack_bits(b[:, 4:8], 1, 1) << np.uint8(4))
    return Q.i8_weight(weight, B.f16(b, 0), q.astype(np.int8), B.f16(b, 2))


@hookimpl
def register_kernels(register):
    if Q is not None:
        for kernel in Q.kernels("Q5_1", Q.I8):
            register(kernel)
