from __future__ import annotations

import pytest

from rocmforge_core.registry import get_registry


@pytest.fixture(scope="session")
def cpu():
    return get_registry().backend("cpu")


@pytest.fixture(scope="session")
def registry():
    return get_registry()
