"""Q6_K for the cpu backend: 6-bit values, less 32, widened to signed bytes; each 16-weight group's int8 scale
multiplied by the fp16 super-block scale in float32 (as ggml does)."""

import numpy as np

from rocmforge_core import blocks as B
from rocmforge_core.hookspecs import hookimpl

try:
    from rocmforge_cpu_simd import quantized as Q
except ImportError:  # the cpu backend is not installed: nothing to register
    Q = None


def repack(weight):
    """GGUF blocks -> the cpu backend's "cpu.i8" layout (see rocmforge_cpu_simd.quantized)."""
    b = Q.blocks_of(weight, 210)
    q = B.unpack_bits(b[:, 0:128], 4, 64) | (B.unpack_bits(b[:, 128:192], 2, 32) << np.uint8(4))
    scale = B.f16(b, 208) * b[:, 192:208].view(np.int8).astype(np.float32)
    return Q.i8_weight(weight, scale, q.astype(np.int8) - np.int8(32))


@hookimpl
def register_kernels(register):
    if Q is not None:
        for kernel in Q.kernels("Q6_K", Q.I8):
            register(kernel)
