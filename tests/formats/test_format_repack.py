"""The repacking hook: a format's repacker for a backend is applied by Backend.upload_weight at load time."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from rocmforge_core.backend import Backend, DeviceInfo, HostBackend
from rocmforge_core.formats import Weight, dequantize_weight
from rocmforge_core.hookspecs import hookimpl
from rocmforge_core.registry import PluginRecord

from .helpers import load_registry

INTERLEAVE = 4


def interleave_rows(weight: Weight) -> Weight:
    """llama.cpp-style repack (as its Q4_0x4 CPU layout): the blocks of 4 consecutive rows interleaved, block by
    block, so that a kernel reads 4 rows' block j from one contiguous run."""
    rows, row_bytes = weight.data.shape
    type_size = weight.meta["type_size"]
    blocks = np.asarray(weight.data).reshape(rows // INTERLEAVE, INTERLEAVE, row_bytes // type_size, type_size)
    return weight.with_data(np.ascontiguousarray(blocks.transpose(0, 2, 1, 3)).reshape(rows, row_bytes),
                            f"x{INTERLEAVE}", interleave=INTERLEAVE)


def deinterleave_rows(data: np.ndarray, type_size: int) -> np.ndarray:
    rows, row_bytes = data.shape
    blocks = data.reshape(rows // INTERLEAVE, row_bytes // type_size, INTERLEAVE, type_size)
    return blocks.transpose(0, 2, 1, 3).reshape(rows, row_bytes)


class FakeHost(HostBackend):
    name = "testhost"

    def devices(self):
        return [DeviceInfo("test host", "none", 0, 1)]


class DeviceArray:
    """Stand-in for device memory: a private copy, reachable only through to_host."""
    def __init__(self, array):
        self._array = np.array(array, copy=True)
        self.shape = self._array.shape
        self.dtype_name = "u8"


class FakeDevice(Backend):
    name = "testdevice"

    def devices(self):
        return [DeviceInfo("test device", "none", 0, 1)]

    def from_host(self, array):
        return DeviceArray(array)

    def to_host(self, tensor):
        return tensor._array.copy()

    def empty(self, shape, dtype):
        return DeviceArray(np.empty(shape, dtype=np.uint8))


class RepackingPlugin:
    """A third-party plugin: Q4_0 under another name, with repackers for both test backends."""
    def __init__(self, base):
        self.base = base

    @hookimpl
    def register_formats(self, register):
        register(replace(self.base, name="Q4_0_TEST", ggml_type=1002, repackers={
            "testhost": interleave_rows, "testdevice": interleave_rows}))


@pytest.fixture()
def registry():
    registry = load_registry()
    registry.add_plugin(RepackingPlugin(registry.format("Q4_0")), PluginRecord("repack-test", "test", "0", __name__))
    return registry


def gguf_weight(fmt, rows=8, cols=256) -> Weight:
    w = fmt.random_weight(np.random.default_rng(0), "blk.0.ffn_down.weight", (rows, cols))
    return replace(w, meta={"type_size": fmt.type_size})


def test_registered_repacker_is_applied_on_upload_to_a_host_backend(registry):
    fmt = registry.format("Q4_0_TEST")
    assert registry.plugins["repack-test"].provides == {"formats": ["Q4_0_TEST"]}
    weight = gguf_weight(fmt)
    uploaded = FakeHost().upload_weight(weight)
    assert uploaded.layout == "x4" and uploaded.meta["interleave"] == INTERLEAVE
    assert uploaded.shape == weight.shape and uploaded.fmt == "Q4_0_TEST"
    assert not np.array_equal(uploaded.data, weight.data)
    assert np.array_equal(deinterleave_rows(uploaded.data, fmt.type_size), weight.data)
    assert weight.layout == "" and weight.meta == {"type_size": fmt.type_size}  # the loaded weight is untouched


def test_repacked_data_is_what_a_device_backend_receives(registry):
    fmt = registry.format("Q4_0_TEST")
    weight = gguf_weight(fmt)
    backend = FakeDevice()
    uploaded = backend.upload_weight(weight)
    assert isinstance(uploaded.data, DeviceArray) and uploaded.layout == "x4"
    assert np.array_equal(backend.to_host(uploaded.data), interleave_rows(weight).data)


def test_backend_without_a_repacker_keeps_gguf_layout(registry):
    fmt = registry.format("Q4_0")
    weight = gguf_weight(fmt)
    uploaded = FakeHost().upload_weight(weight)
    assert uploaded.layout == "" and uploaded.data is weight.data
    on_device = FakeDevice().upload_weight(weight)
    assert on_device.layout == "" and np.array_equal(on_device.data._array, weight.data)


def test_host_dequantize_refuses_a_backend_layout(registry):
    fmt = registry.format("Q4_0_TEST")
    uploaded = FakeHost().upload_weight(gguf_weight(fmt))
    with pytest.raises(ValueError, match="layout 'x4'"):
        dequantize_weight(uploaded)
