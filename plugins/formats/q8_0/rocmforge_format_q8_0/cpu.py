"""Q8_0 for the cpu backend: the int8 values copied out of the blocks into one contiguous array, fp16 scales
widened to float32."""

import numpy as np

from rocmforge_core import blocks as B
from rocmforge_core.hookspecs import hookimpl

try:
    from rocmforge_cpu_simd import quantized as Q
except ImportError:  # the cpu backend is not installed: nothing to register
    Q = None


def repack(weight):
    """GGUF blocks -> the cpu backend's "cpu.i8" layout (see rocmforge_cpu_simd.quantized)."""
    b = Q.blocks_of(weight, 34)
    return Q.i8_weight(weight, B.f16(b, 0), b[:, 2:].view(np.int8))


@hookimpl
def register_kernels(register):
    if Q is not None:
        for kernel in Q.kernels("Q8_0", Q.I8):
            register(kernel)
