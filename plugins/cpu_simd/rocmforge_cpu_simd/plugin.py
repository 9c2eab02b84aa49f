"""Entry point `cpu`: the cpu backend and its kernels for every op (formats add theirs from their cpu.py)."""

from rocmforge_core.hookspecs import hookimpl
from rocmforge_cpu_simd.backend import CpuBackend
from rocmforge_cpu_simd.ops import activation, attention, dense, elementwise, logprobs, rmsnorm, rope, sample


@hookimpl
def register_backends(register):
    register(CpuBackend())


@hookimpl
def register_kernels(register):
    for module in (activation, attention, dense, elementwise, logprobs, rmsnorm, rope, sample):
        for kernel in module.kernels():
            register(kernel)
