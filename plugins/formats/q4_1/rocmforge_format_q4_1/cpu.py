"""Q4_1 for the cpu backend: nibbles kept as they are, fp16 scales and minimums widened to float32 once."""

from rocmforge_core import blocks as B
from rocmforge_core.hookspecs import hookimpl

try:
    from rocmforge_cpu_simd import quantized as Q
except ImportError:  # the cpu backend is not installed: nothing to register
    Q = None


def repack(weight):
    """GGUF blocks -> the cpu backend's "cpu.q4" layout (see rocmforge_cpu_simd.quantized)."""
    b = Q.blocks_of(weight, 20)
    return Q.q4_weight(weight, B.f16(b, 0), B.f16(b, 2), b[:, 4:])


@hookimpl
def register_kernels(register):
    if Q is not None:
        for kernel in Q.kernels("Q4_1", Q.Q4):
            register(kernel)
