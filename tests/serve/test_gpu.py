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


def test_prefix_cache_and_preemption_on_the_gpu_keep_answers(tiny_chat_model):
    """On hip: chat answers with a shared system prompt found in the prefix cache, and streams preempted for
    want of KV blocks (--kv-size 176: 11 blocks for 4 streams of 76 tokens), equal the answers of a server
    without a prefix cache running each request alone (the openai client, as tests/serve does on cpu)."""
    from test_prefix_and_preemption import GREEDY, QUESTIONS, chat, client, streams_together

    if "hip" not in get_registry().backends:
        pytest.skip("the hip backend is not installed (pip install -e plugins/rocm_hip)")
    prompts = [[5 + i, 40, 41, 42] * 4 for i in range(4)]
    common = ("--model", str(tiny_chat_model), "--backend", "hip", "--parallel", "4")
    with serve_process(*common, "--no-prefix-cache") as (proc, url):
        if proc.poll() is not None:
            pytest.skip(f"the server did not start on hip: {proc.stderr.read().strip().splitlines()[-1]}")
        with client(url) as c:
            chats = [chat(c, q).choices[0].message.content for q in QUESTIONS]
            alone = [c.completions.create(model="tiny-chat", prompt=p, max_tokens=60, **GREEDY,
                                          extra_body={"ignore_eos": True}).choices[0].text for p in prompts]
    with serve_process(*common, "--kv-size", "176") as (proc, url):
        with client(url) as c:
            cached = [chat(c, q) for q in QUESTIONS]
        together = streams_together(url, prompts, 60)
        m = wait_idle(url)
    assert [r.choices[0].message.content for r in cached] == chats
    assert all(r.usage.prompt_tokens_details.cached_tokens >= 48 for r in cached[1:])
    assert together == alone
    assert m["rocmforge_preemptions_total"] > 0 and m["rocmforge_prefix_cache_hits_total"] > 0
    assert (m["rocmforge_sequences_running"], m["rocmforge_kv_blocks_used"]) == (0, 0)
