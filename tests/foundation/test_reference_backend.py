"""The reference backend: host memory semantics, exact weight upload, and its kernels equal to the references."""

from __future__ import annotations

import numpy as np

from rocmforge_core import ops
from rocmforge_core.formats import dequantize_weight
from rocmforge_core.reference_backend import ReferenceBackend


def test_memory_is_copied_in_and_out():
    backend = ReferenceBackend()
    assert backend.available() and backend.is_host and backend.devices()[0].name == "numpy"
    host = np.arange(6, dtype=np.float32).reshape(2, 3)
    tensor = backend.from_host(host)
    host[0, 0] = 99  # the backend's copy must not follow the host array
    assert tensor[0, 0] == 0 and backend.owns(tensor)
    backend.write(tensor, np.ones((2, 3), np.float32))
    assert np.array_equal(backend.to_host(tensor), np.ones((2, 3)))
    for dtype, np_dtype in (("f32", np.float32), ("f16", np.float16), ("i32", np.int32)):
        assert backend.empty((4, 5), dtype).dtype == np_dtype


def test_upload_dequantizes_exactly_once(example_registry):
    fmt = example_registry.format("TQ2_0")
    weight = fmt.random_weight(np.random.default_rng(3), "blk.0.ffn_up.weight", (4, 512))
    uploaded = ReferenceBackend().upload_weight(weight)
    assert uploaded.layout == "f32" and uploaded.fmt == "TQ2_0" and uploaded.shape == (4, 512)
    assert np.array_equal(uploaded.data, fmt.dequantize(weight.data))
    assert ops.arg_info(uploaded) == ops.ArgInfo((4, 512), "TQ2_0", "f32")
    # the kernels take the uploaded weight and give what the reference gives on the raw one
    x = np.random.default_rng(4).standard_normal((3, 512)).astype(np.float32)
    kernel = {k.op: k for k in example_registry.kernels if k.backend == "reference" and k.plugin == "reference"}
    assert np.array_equal(kernel["matmul"].fn(x, uploaded), ops.reference("matmul")(x, weight))
    assert np.array_equal(kernel["dequant"].fn(uploaded), dequantize_weight(weight))
    ids = np.array([3, 0, 3], np.int32)
    assert np.array_equal(kernel["embedding"].fn(uploaded, ids), dequantize_weight(weight)[ids])


def test_copy_between_host_backends_is_a_copy():
    a, b = ReferenceBackend(), ReferenceBackend()
    t = a.from_host(np.ones(3, np.float32))
    moved = b.copy_from(t, a)
    t[0] = 5
    assert moved[0] == 1
