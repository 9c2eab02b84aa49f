"""The cpu repackers on every tensor of the two real models: dequantizing the cpu layout gives exactly the
format's reference dequantization (itself bit-exact with ggml), and the products agree with float32 math."""

from __future__ import annotations

import numpy as np

from rocmforge_core import ops
from rocmforge_core.gguf import open_gguf


def _check_model(path, registry, cpu):
    rng = np.random.default_rng(0)
    seen = set()
    with open_gguf(path) as g:
        for name, info in g.tensors.items():
            w = g.weight(name)
            # Every 2-D tensor outside the layers, and the layers' tensors of three layers (all their types).
            if len(w.shape) != 2 or (name.startswith("blk.") and name.split(".")[1] not in ("0", "1", "5")):
                continue
            packed = cpu.upload_weight(w)
            seen.add((w.fmt, packed.layout))
            # Full tensors, except the 262k-row embeddings: a random subset of their rows.
            rows = np.arange(w.shape[0]) if w.shape[0] <= 8192 else np.sort(rng.choice(w.shape[0], 4096, False))
            expected = registry.format(w.fmt).dequantize(np.asarray(w.data)[rows])
            embed = registry.kernels_for(ops.signature("embedding", (packed, rows), {}), backend="cpu")[0].kernel
            np.testing.assert_array_equal(embed.fn(packed, rows), expected, err_msg=name)
            if w.shape[0] <= 8192:
                x = rng.standard_normal((2, w.shape[1])).astype(np.float32)
                mm = registry.kernels_for(ops.signature("matmul", (x, packed), {}), backend="cpu")[0].kernel
                want = x.astype(np.float64) @ expected.astype(np.float64).T
                assert ops.nmse(mm.fn(x, packed), want) < 1e-10, name
    return seen


def test_gemma_tensors(gemma_path, registry, cpu):
    seen = _check_model(gemma_path, registry, cpu)
    assert {("Q8_0", "cpu.i8"), ("Q5_0", "cpu.i8"), ("Q4_K", "cpu.q4"), ("Q6_K", "cpu.i8")} <= seen


def test_smollm2_tensors(smollm2_path, registry, cpu):
    seen = _check_model(smollm2_path, registry, cpu)
    assert {("Q4_1", "cpu.q4"), ("Q8_0", "cpu.i8")} <= seen
