"""Every "cpu" kernel against the op references, on every op SPEC's cases (through the core's conformance kit)."""

from __future__ import annotations

import numpy as np
import pytest

from rocmforge_core import ops
from rocmforge_core.conformance import run_conformance
from rocmforge_core.formats import Weight
from rocmforge_core.registry import get_registry

NATIVE = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K")


@pytest.fixture(scope="module")
def results():
    registry = get_registry()
    if "cpu" not in registry.backends:
        pytest.fail(f"backend 'cpu' is not registered: {registry.plugins.get('cpu')}")
    return [r for r in run_conformance(registry, backend="cpu", seed=20261122) if r.backend == "cpu"]


@pytest.mark.parametrize("op", ops.OP_NAMES)
def test_every_op_passes_on_cpu(results, op):
    of_op = [r for r in results if r.op == op]
    failed = [f"{r.name}: {r.message}" for r in of_op if r.status == "fail"]
    assert not failed, "\n".join(failed)
    assert any(r.passed for r in of_op), f"no cpu kernel ran any {op} case"


@pytest.mark.parametrize("fmt", NATIVE)
def test_native_formats_run_on_their_own_kernels(results, fmt):
    """The repacker is attached and the format's kernels (not the dequantize+BLAS fallback) took the cases."""
    native = f"cpu.{fmt.lower()}"
    for op in ("matmul", "dequant", "embedding"):
        ran = [r.name for r in results if r.op == op and r.passed and f"-{fmt}" in r.name]
        assert ran and all(name.startswith(native) for name in ran), (op, ran)


def test_every_case_has_a_capable_cpu_kernel():
    registry = get_registry()
    rng = np.random.default_rng(0)
    formats = sorted(registry.formats.values(), key=lambda f: f.name)
    backend = registry.backend("cpu")
    for op in ops.OP_NAMES:
        for case in ops.spec(op).cases(rng, formats):
            args = tuple(backend.upload_weight(a) if isinstance(a, Weight) else a
                         for a in case.args)
            sig = ops.signature(op, args, case.params)
            assert any(c.verdict for c in registry.kernels_for(sig, backend="cpu")), f"no cpu kernel for {sig}"
