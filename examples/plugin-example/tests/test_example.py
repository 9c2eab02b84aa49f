"""The plugin's own tests, as a plugin author writes them: a registry built in a fixture, the kit run on it.

Run from this directory after `pip install .`:  pytest tests --rocmforge-conformance=example
(the option adds the kit's generated checks to these tests)."""

import numpy as np
import pytest

import rocmforge_example_plugin
from rocmforge_core import reference_backend
from rocmforge_core.conformance import run_conformance
from rocmforge_core.registry import PluginRecord, Registry, registry_in_use


@pytest.fixture
def registry():
    r = Registry()
    r.add_plugin(reference_backend, PluginRecord("reference", "rocmforge", "0", "rocmforge_core.reference_backend"))
    r.add_plugin(rocmforge_example_plugin, PluginRecord("example", "rocmforge-example-plugin", "0",
                                                        "rocmforge_example_plugin"))
    with registry_in_use(r):  # host weights find their format through the process-wide registry
        yield r


def test_registers_its_format_and_kernel(registry):
    assert registry.plugins["example"].ok, registry.plugins["example"].error
    assert registry.format_by_type(35).name == "TQ2_0"
    assert [k.name for k in registry.kernels if k.plugin == "example"] == ["example.rmsnorm"]


def test_conforms(registry):
    results = run_conformance(registry, plugin="example", seed=0)
    assert results and not [r for r in results if not r.passed], [r.message for r in results if not r.passed]


def test_quantize_round_trip_keeps_ternary_values():
    tq2_0 = rocmforge_example_plugin.tq2_0
    values = tq2_0.dequantize(tq2_0.random_blocks(np.random.default_rng(0), 4).reshape(1, -1))
    assert np.array_equal(tq2_0.dequantize(tq2_0.quantize(values)), values)
