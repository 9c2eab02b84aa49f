"""Serving on the GPU backend (run on the device machine: `pytest -m gpu tests/serve`): the engine thread loads
the model and runs every step (a device context belongs to its thread), and batched greedy answers equal the
same requests alone."""

from __future__ import annotations

import asyncio

import pytest

from conftest import wait_idle
from rocmforge_core.registry import get_registry
from rocmforge_core.serve import ServeOptions
from rocmforge_core.serve.loadtest import requests_for, run_load
from rocmforge_core.serve.server import ServerThread

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def hip():
    backend = get_registry().backends.get("hip")
    if backend is None:
        pytest.skip("the hip backend is not installed (pip install -e plugins/rocm_hip)")
    verdict = backend.available()
    if not verdict:
        pytest.skip(f"the hip backend cannot run here: {verdict.reason}")
    return "hip"


def test_batched_answers_on_the_gpu_equal_alone(hip, tiny_chat_model):
    bodies = requests_for(24, 12)
    with ServerThread(ServeOptions(model=tiny_chat_model, backend=hip, parallel=8)) as srv:
        alone, _ = asyncio.run(run_load(srv.url, bodies, 1))
        together, _ = asyncio.run(run_load(srv.url, bodies, 8))
        m = wait_idle(srv.url)
    assert [(r.text, r.completion_tokens) for r in together] == [(r.text, r.completion_tokens) for r in alone]
    assert m["rocmforge_decode_batch_max"] > 1
    assert (m["rocmforge_sequences_running"], m["rocmforge_kv_blocks_used"]) == (0, 0)
