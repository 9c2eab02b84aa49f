"""An example third-party rocmforge plugin: one quantization format and one kernel.

Everything a plugin provides goes through the hooks below, each handed a ``register`` callback.
"""

from rocmforge_core.hookspecs import hookimpl

from rocmforge_example_plugin.rmsnorm import KERNEL
from rocmforge_example_plugin.tq2_0 import TQ2_0


@hookimpl
def register_formats(register):
    register(TQ2_0)


@hookimpl
def register_kernels(register):
    register(KERNEL)
