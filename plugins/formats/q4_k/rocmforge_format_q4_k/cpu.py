"""Q4_K for the cpu backend: each 32-weight sub-block becomes a Q4_1-style block, its 6-bit scale and minimum
multiplied out in float32 (as ggml does), its nibbles reordered to Q4_0's order."""

import numpy as np

from rocmforge_core import blocks as B
from rocmforge_core.hookspecs import hookimpl

try:
    from rocmforge_cpu_simd import quantized as Q
except ImportError:  # the cpu backend is not installed: nothing to register
    Q = None


def repack(weight):
    """GGUF blocks -> the cpu backend's "cpu.q4" layout (see rocmforge_cpu_simd.quantized)."""
    b = Q.blocks_of(weight, 144)
    sc, mn = B.unpack_scale_min_6bit(b[:, 4:16])
    scale = B.f16(b, 0) * sc.astype(np.float32)
    minv = -(B.f16(b, 2) * mn.astype(np.float32))
    q = B.unpack_bits(b[:, 16:144], 4, 32).reshape(weight.shape[0], -1)
    return Q.q4_weight(weight, scale, minv, Q.pack_nibbles(q))


@hookimpl
def register_kernels(register):
    if Q is not None:
        for kernel in Q.kernels("Q4_K", Q.Q4):
            register(kernel)
