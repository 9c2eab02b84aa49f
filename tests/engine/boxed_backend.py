"""A test backend whose tensors are not numpy arrays ("device" memory, as a GPU backend's are), with the
reference kernels behind it and a capture that records a step for replay. It lets the tests exercise weight
uploads, activation copies between backends and captured decode steps without a GPU."""

from __future__ import annotations

import numpy as np

from rocmforge_core import ops
from rocmforge_core.backend import NUMPY_DTYPES, Backend, DeviceInfo
from rocmforge_core.formats import Weight
from rocmforge_core.hookspecs import hookimpl
from rocmforge_core.registry import PluginRecord, Registry


class Box:
    def __init__(self, array: np.ndarray):
        self.a = array

    @property
    def shape(self):
        return self.a.shape

    @property
    def dtype_name(self):
        return ops.DTYPE_NAMES[self.a.dtype.type]

    def reshape(self, *shape):
        return Box(self.a.reshape(*shape))


def unbox(x):
    if isinstance(x, Box):
        return x.a
    if isinstance(x, Weight) and isinstance(x.data, Box):
        return x.with_data(x.data.a, x.layout)
    return x


class BoxedBackend(Backend):
    name = "boxed"

    def __init__(self, ops_supported=ops.OP_NAMES):
        self.ops_supported = ops_supported
        self.captures = 0
        self.replays = 0

    def devices(self):
        return [DeviceInfo("box", "test", 0, 1)]

    def from_host(self, array):
        return Box(np.array(array, copy=True))

    def to_host(self, tensor):
        return tensor.a.copy()

    def empty(self, shape, dtype):
        return Box(np.empty(shape, dtype=NUMPY_DTYPES[dtype]))

    def write(self, tensor, array):
        tensor.a[...] = array

    def upload_weight(self, weight):
        # Keep exact f32 values, as the reference does, but in this backend's memory.
        from rocmforge_core.formats import dequantize_weight
        return weight.with_data(Box(dequantize_weight(weight)), "f32")

    def capture(self, step):
        """A "graph": replaying runs the recorded step again, reading the same input tensors."""
        self.captures += 1

        def replay():
            self.replays += 1
            step()
        return replay


def kernels(backend: BoxedBackend):
    for op in backend.ops_supported:
        ref = ops.reference(op)

        def fn(*args, _ref=ref, **params):
            out = _ref(*(unbox(a) for a in args), **params)
            return Box(np.asarray(out))
        yield ops.Kernel(op, "boxed", f"boxed.{op}", fn)


def plugin(backend: BoxedBackend):
    class Plugin:
        @hookimpl
        def register_backends(self, register):
            register(backend)

        @hookimpl
        def register_kernels(self, register):
            for k in kernels(backend):
                register(k)
    return Plugin()


def registry_with(backend: BoxedBackend) -> Registry:
    """The installed plugins (reference backend, formats, architectures) plus ``backend``."""
    registry = Registry()
    registry.load_entry_points()
    registry.add_plugin(plugin(backend), PluginRecord("boxed", "tests", "0", "boxed_backend"))
    return registry
