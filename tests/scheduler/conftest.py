"""Fixtures: a fresh registry with the installed formats, the reference backend and architectures, plus the fake
"gpu" and "cpu" backends of fakes.py (the real cpu and hip plugins are not loaded: CI has no GPU, and these tests
are about placement, not kernels)."""

from __future__ import annotations

from importlib import metadata

import pytest

from rocmforge_core import registry as registry_module
from rocmforge_core.registry import ENTRY_POINT_GROUP, Registry

from . import fakes


def core_plugins() -> list[str]:
    return [ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)
            if ep.name == "reference" or ep.name.startswith(("format.", "arch.")) and ep.name.count(".") == 1]


@pytest.fixture
def make_registry():
    """make_registry(gpu=GPUPlugin(...) or None, cpu=CPUPlugin(...) or None) -> a fresh Registry, also installed
    as the process-wide one (the reference kernels look formats up there) until the test ends."""
    saved = registry_module._REGISTRY

    def make(gpu=None, cpu=None):
        reg = Registry()
        reg.load_entry_points(core_plugins())
        if cpu is not None:
            fakes.add(reg, "fake-cpu", cpu)
        if gpu is not None:
            fakes.add(reg, "fake-gpu", gpu)
        registry_module.reset_registry(reg)
        return reg

    yield make
    registry_module.reset_registry(saved)
