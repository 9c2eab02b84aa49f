"""Fake backends for the scheduler tests: a "gpu" whose tensors are not numpy arrays (so every crossing needs a
real copy, as on a device) and whose kernels refuse chosen formats and ops, plus a host "cpu". Both compute with
the ops' numpy references, so any placement gives the same numbers and tests compare plans, not arithmetic."""

from __future__ import annotations

import numpy as np

from rocmforge_core import ops
from rocmforge_core.backend import NUMPY_DTYPES, Backend, DeviceInfo, HostBackend
from rocmforge_core.formats import Weight
from rocmforge_core.hookspecs import hookimpl
from rocmforge_core.ops import Kernel, no, yes
from rocmforge_core.registry import PluginRecord


class DevArray:
    """A tensor in fake device memory."""

    def __init__(self, array: np.ndarray):
        self.array = array

    @property
    def shape(self):
        return self.array.shape

    @property
    def dtype_name(self) -> str:
        return ops.DTYPE_NAMES[self.array.dtype.type]

    def reshape(self, *shape):
        return DevArray(self.array.reshape(*shape))


class FakeGPU(Backend):
    name = "gpu"

    def __init__(self):
        self.copies_in = 0
        self.copies_out = 0

    def devices(self):
        return [DeviceInfo("fake gpu", "fake1", 1 << 30, 8)]

    def from_host(self, array):
        self.copies_in += 1
        return DevArray(np.array(array, copy=True))

    def to_host(self, tensor):
        self.copies_out += 1
        return np.array(tensor.array, copy=True)

    def empty(self, shape, dtype):
        return DevArray(np.zeros(shape, dtype=NUMPY_DTYPES[dtype]))

    def write(self, tensor, array):
        tensor.array[...] = array

    def upload_weight(self, weight):
        return weight.with_data(DevArray(np.asarray(weight.data)), weight.layout)

    def owns(self, tensor):
        return isinstance(tensor, DevArray) or (isinstance(tensor, Weight) and isinstance(tensor.data, DevArray))


class FakeCPU(HostBackend):
    name = "cpu"

    def devices(self):
        return [DeviceInfo("fake cpu", "host", 0, 2)]

    def upload_weight(self, weight):
        return weight  # the format plugins' "cpu" repackers are for the real cpu backend's kernels


def _host(value):
    if isinstance(value, DevArray):
        return value.array
    if isinstance(value, Weight) and isinstance(value.data, DevArray):
        return value.with_data(value.data.array, value.layout)
    return value


class GPUPlugin:
    """Kernels for every op on "gpu", refusing the given formats (any op reading a weight of that type) and ops.
    ``fail`` maps an op to a function(call number) -> "raise" | "nan" | "huge" | None, to make kernels fail on
    demand ("huge": finite values 1e20 times too large, which only a later op turns into NaN)."""

    def __init__(self, refuse_formats=(), refuse_ops=(), fail=None, name="gpu"):
        self.backend = FakeGPU()
        self.backend.name = name
        self.refuse_formats = set(refuse_formats)
        self.refuse_ops = set(refuse_ops)
        self.fail = fail or {}
        self.calls: dict[str, int] = {}

    def supports(self, sig):
        if sig.op in self.refuse_ops:
            return no(f"{self.backend.name} has no {sig.op} kernel")
        bad = [a.dtype for a in sig.args if a.dtype in self.refuse_formats]
        return no(f"{self.backend.name} cannot read {bad[0]} weights") if bad else yes()

    def kernel(self, op):
        reference = ops.reference(op)

        def run(*args, **params):
            n = self.calls[op] = self.calls.get(op, 0) + 1
            mode = self.fail.get(op, lambda n: None)(n)
            if mode == "raise":
                raise RuntimeError(f"fake {self.backend.name} {op} failed on call {n}")
            out = reference(*(_host(a) for a in args), **params)
            if mode == "nan":
                out = np.full_like(out, np.nan)
            elif mode == "huge":
                out = out * np.float32(1e20)
            return DevArray(out)
        name = self.backend.name
        return Kernel(op, name, f"{name}.{op}", run, self.supports)

    @hookimpl
    def register_backends(self, register):
        register(self.backend)

    @hookimpl
    def register_kernels(self, register):
        for op in ops.OP_NAMES:
            register(self.kernel(op))


class CPUPlugin:
    def __init__(self, refuse_ops=()):
        self.refuse_ops = set(refuse_ops)

    @hookimpl
    def register_backends(self, register):
        register(FakeCPU())

    @hookimpl
    def register_kernels(self, register):
        for op in ops.OP_NAMES:
            supports = (lambda sig, op=op: no(f"cpu has no {op} kernel") if op in self.refuse_ops else yes())
            register(Kernel(op, "cpu", f"cpu.{op}", ops.reference(op), supports))


def add(registry, name: str, plugin) -> None:
    registry.add_plugin(plugin, PluginRecord(name, f"fake-{name}", "1.0", __name__))
