"""Q5_0 for the cpu backend: the 5-bit values, less 16, widened to signed bytes; fp16 scales to float32."""

import numpy as np

from rocmforge_core import blocks as B
from rocmforge_core.hookspecs import hookimpl

try:
    from rocmforge_cpu_simd import quantized as Q
except ImportError:  # the cpu backend is not installed: nothing to register
    Q = None


def repack(weight):
    """GGUF blocks -> the cpu backend's "cpu.i8" layout (see rocmforge_cpu_simd.quantized)."""
    b = Q.blocks_of(weight, 22)
    q = B.unpack_bits(b[:, 6:], 4, 16) | (B.unpack_bits(b[:, 2:6], 1, 1) << np.uint8(4))
    return Q.i8_weight(weight, B.f16(b, 0), q.astype(np.int8) - np.int8(16))


@hookimpl
def register_kernels(register):
    if Q is not None:
        for kernel in Q.kernels("Q5_0", Q.I8):
            register(kernel)
