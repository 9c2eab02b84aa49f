"""Entry point ``hip``: the HIP backend and its kernels. Registering needs no GPU; ``available()`` says whether one
can be used, and why not."""

from rocmforge_core.hookspecs import hookimpl
from rocmforge_rocm_hip.backend import HipBackend
from rocmforge_rocm_hip.ops import kernels

BACKEND = HipBackend()


@hookimpl
def register_backends(register):
    register(BACKEND)


@hookimpl
def register_kernels(register):
    for kernel in kernels(BACKEND):
        register(kernel)
