"""The ``reference`` backend: the ops' numpy references as a backend (exact dequantization, float32, slow).

It is the oracle for tests and ``--backend reference``. It registers through the core's own entry point, the same
way every other plugin does.
"""

from __future__ import annotations

from rocmforge_core import ops
from rocmforge_core.backend import DeviceInfo, HostBackend
from rocmforge_core.formats import Weight, dequantize_weight
from rocmforge_core.hookspecs import hookimpl


class ReferenceBackend(HostBackend):
    name = "reference"
    oracle = True

    def devices(self) -> list[DeviceInfo]:
        return [DeviceInfo("numpy", "host", 0, 1)]

    def upload_weight(self, weight: Weight) -> Weight:
        # Dequantize once at load: every later matmul is a plain float32 product.
        return weight.with_data(dequantize_weight(weight), "f32")


@hookimpl
def register_backends(register):
    register(ReferenceBackend())


@hookimpl
def register_kernels(register):
    for op in ops.OP_NAMES:
        register(ops.Kernel(op, "reference", f"reference.{op}", ops.reference(op)))
