"""All sixteen formats load through entry points, each from its own distribution, with GGUF's block sizes."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from gguf.constants import GGML_QUANT_SIZES

from .helpers import FORMATS, QUANTIZABLE, gguf_type, load_registry

REGISTRY = load_registry()


def test_every_format_plugin_loads_without_error():
    failed = {name: rec.error for name, rec in REGISTRY.plugins.items() if not rec.ok}
    assert not failed
    assert sorted(REGISTRY.formats) == sorted(FORMATS)


@pytest.mark.parametrize("name", FORMATS)
def test_format_comes_from_its_own_distribution(name):
    fmt = REGISTRY.format(name)
    record = REGISTRY.plugins[fmt.plugin]
    assert record.name == f"format.{name.lower()}"
    assert record.distribution == f"rocmforge-format-{name.lower().replace('_', '-')}"
    assert record.module == f"rocmforge_format_{name.lower()}.plugin"
    assert record.provides == {"formats": [name]}


@pytest.mark.parametrize("name", FORMATS)
def test_layout_matches_gguf(name):
    fmt = REGISTRY.format(name)
    assert fmt.ggml_type == gguf_type(name).value
    assert (fmt.block_size, fmt.type_size) == GGML_QUANT_SIZES[gguf_type(name)]
    assert REGISTRY.format_by_type(fmt.ggml_type) is fmt
    assert (fmt.quantize is not None) == (name in QUANTIZABLE)


@pytest.mark.parametrize("name", FORMATS)
def test_kernel_sources_are_the_device_files_beside_the_plugin(name):
    plugin_dir = Path(importlib.import_module(f"rocmforge_format_{name.lower()}.plugin").__file__).resolve().parent
    expected = {p.suffix[1:]: p for p in plugin_dir.glob("device.*")}
    assert REGISTRY.format(name).kernel_sources == expected


def test_plugins_report_lists_sixteen_formats_each_from_its_own_distribution():
    """What `rocmforge plugins --json` prints under "formats" and "plugins"."""
    from rocmforge_core.cli.plugins import collect
    report = collect(REGISTRY)
    assert sorted(report["formats"]) == sorted(FORMATS)
    distributions = {p["name"]: p["distribution"] for p in report["plugins"] if p["ok"]}
    owners = [distributions[entry["plugin"]] for entry in report["formats"].values()]
    assert len(set(owners)) == 16 and all(d.startswith("rocmforge-format-") for d in owners)
