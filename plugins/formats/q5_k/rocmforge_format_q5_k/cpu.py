"""Q5_K for the cpu backend: 5-bit values widened to bytes; each 32-weight sub-block's scale and minimum
multiplied out in float32 (as ggml does)."""

import numpy as np

from rocmforge_core import blocks as B
from rocmforge_core.hookspecs import hookimpl

try:
    from rocmforge_cpu_simd import quantized as Q
except ImportError:  # the cpu backend is not installed: nothing to register
    Q = None


def repack(weight):
    """GGUF blocks -> the cpu backend's "cpu.i8" layout (see rocmforge_cpu_simd.quantized)."""
    b = Q.blocks_of(weight, 176)
    sc, mn = B.unpack_scale_min_6bit(b[:, 4:16])
    q = B.unpack_bits(b[:, 48:176], 4, 32) | (B.unpack_bits(b[:, 16:48], 1, 32) << np.uint8(4))
    minv = -(B.f16(b, 2) * mn.astype(np.float32))
    return Q.i8_weight(weight, B.f16(b, 0) * sc.astype(np.float32), q.astype(np.int8), minv)


@hookimpl
def register_kernels(register):
    if Q is not None:
        for kernel in Q.kernels("Q5_K", Q.I8):
            register(kernel)
