"""The registry: loading, isolation of failing plugins, all-or-nothing registration, deterministic ranking."""

from __future__ import annotations

import itertools
import numpy as np
import pytest

from rocmforge_core import ops
from rocmforge_core.backend import DeviceInfo, HostBackend
from rocmforge_core.errors import PluginError, UnsupportedError
from rocmforge_core.ops import ArgInfo, Kernel, Signature, no, yes
from rocmforge_core.registry import Registry

from .helpers import add, plugin, reference_registry


class ToyBackend(HostBackend):
    def __init__(self, name):
        self.name = name

    def devices(self):
        return [DeviceInfo("toy", "host", 0, 1)]


RMS = Signature("rmsnorm", (ArgInfo((1, 64), "f32"), ArgInfo((64,), "f32")), (("eps", 1e-6),))


def test_reference_plugin_registers_backend_and_one_kernel_per_op():
    registry = reference_registry()
    record = registry.plugins["reference"]
    assert record.ok and record.provides["backends"] == ["reference"]
    assert sorted(k.op for k in registry.kernels) == sorted(ops.OP_NAMES)
    assert all(k.plugin == "reference" and k.backend == "reference" for k in registry.kernels)


def test_register_hook_failure_is_recorded_and_withdraws_the_whole_plugin():
    registry = reference_registry()
    record = add(registry, "half", plugin(backends=[ToyBackend("half")],
                                          kernels=[Kernel("rmsnorm", "half", "half.rmsnorm", ops.reference("rmsnorm"))],
                                          fail_in="register_kernels"))
    assert not record.ok and "register_kernels: RuntimeError: register_kernels broke on purpose" in record.error
    assert "half" not in registry.backends  # registered by the hook that worked, withdrawn with the plugin
    assert not [k for k in registry.kernels if k.plugin == "half"]
    assert registry.plugins["reference"].ok and "reference" in registry.backends


def test_duplicate_backend_name_is_an_error_of_the_second_plugin_only():
    registry = reference_registry()
    record = add(registry, "impostor", plugin(backends=[ToyBackend("reference")]))
    assert "already provided by plugin 'reference'" in record.error
    assert registry.backends["reference"].plugin == "reference"


def test_same_plugin_name_twice_is_refused():
    registry = reference_registry()
    with pytest.raises(PluginError, match="already registered"):
        add(registry, "reference", plugin())


def test_remove_plugin_drops_everything_it_provided():
    registry = reference_registry()
    add(registry, "toy", plugin(backends=[ToyBackend("toy")],
                                kernels=[Kernel("add", "toy", "toy.add", ops.reference("add"))]))
    registry.remove_plugin("toy")
    assert "toy" not in registry.plugins and "toy" not in registry.backends
    assert not [k for k in registry.kernels if k.plugin == "toy"]
    add(registry, "toy", plugin())  # the name is free again


def _kernels():
    ref = ops.reference("rmsnorm")
    return [
        Kernel("rmsnorm", "b", "b.fast", ref, priority=5),
        Kernel("rmsnorm", "a", "a.fast", ref, priority=5),
        Kernel("rmsnorm", "a", "a.slow", ref, priority=0),
        Kernel("rmsnorm", "a", "a.incapable", ref, lambda sig: no("never"), priority=9),
        Kernel("rmsnorm", "a", "a.same", ref, priority=1),
        Kernel("rmsnorm", "a", "a.other", ref, priority=1),  # ties with a.same: kernel names are unique
    ]


def test_ranking_is_independent_of_registration_order():
    orders = set()
    for perm in itertools.permutations(range(6)):
        registry = Registry()
        for i in perm:
            add(registry, f"p{i}", plugin(kernels=[_kernels()[i]]))
        orders.add(tuple(c.kernel.name for c in registry.kernels_for(RMS)))
    # capable first, then priority (higher first), backend, kernel name
    assert orders == {("a.fast", "b.fast", "a.other", "a.same", "a.slow", "a.incapable")}


def test_kernels_for_filters_by_backend_and_keeps_reasons():
    registry = Registry()
    for i, kernel in enumerate(_kernels()):
        add(registry, f"p{i}", plugin(kernels=[kernel]))
    found = registry.kernels_for(RMS, backend="a")
    assert [c.kernel.name for c in found] == ["a.fast", "a.other", "a.same", "a.slow", "a.incapable"]
    assert found[-1].verdict == no("never")


def test_capability_query_that_raises_is_a_no_with_the_reason():
    kernel = Kernel("rmsnorm", "a", "a.buggy", ops.reference("rmsnorm"), lambda sig: 1 / 0)
    verdict = kernel.check(RMS)
    assert not verdict and "ZeroDivisionError" in verdict.reason
    assert not Kernel("add", "a", "a.add", ops.reference("add")).check(RMS)  # wrong op


def test_missing_backend_and_format_errors_say_what_to_install():
    registry = reference_registry()
    with pytest.raises(PluginError, match=r"pip install 'rocmforge\[cpu\]'"):
        registry.backend("cpu")
    with pytest.raises(UnsupportedError, match="install rocmforge-format-q4-k"):
        registry.format("Q4_K")


def test_verdicts():
    assert yes() and not no("x") and no("x").reason == "x"
    sig = ops.signature("add", (np.zeros((2, 3), np.float32), np.zeros(3, np.float32)), {})
    assert str(sig) == "add(f32[2, 3], f32[3])"
