"""Serving on the GPU backend (on the device machine: `pytest -m gpu tests/serve`). The server runs as its own
process, as users run it, so nothing in the test process touches the device first: the engine thread loads the
model and runs every step. Batched greedy answers must equal the same requests alone."""

from __future__ import annotations

import asyncio

import pytest

from conftest import serve_process, wait_idle
from rocmforge_core.registry import get_registry
from rocmforge_core.serve.loadtest import requests_for, run_load

pytestmark = pytest.mark.gpu


def test_batched_answers_on_the_gpu_equal_alone(tiny_chat_model):
    if "hip" not in get_registry().backends:
        pytest.skip("the hip backend is not installed (pip install -e plugins/rocm_hip)")
    bodies = requests_for(24, 12)
    with serve_process("--model", str(tiny_chat_model), "--backend", "hip", "--parallel", "8") as (proc, url):
        if proc.poll() is not None:
            pytest.skip(f"the server did not start on hip: {proc.stderr.read().strip().splitlines()[-1]}")
        alone, _ = asyncio.run(run_load(url, bodies, 1))
        together, _ = asyncio.run(run_load(url, bodies, 8))
        m = wait_idle(url)
    assert [(r.text, r.completion_tokens) for r in together] == [(r.text, r.completion_tokens) for r in alone]
    assert m["rocmforge_decode_batch_max"] > 1
    assert (m["rocmforge_sequences_running"], m["rocmforge_kv_blocks_used"]) == (0, 0)
