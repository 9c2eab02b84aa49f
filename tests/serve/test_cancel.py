"""Clients that leave: a stream closed mid-way, a client process killed mid-stream, a non-streaming client that
times out. Each must leave no sequence and no KV block behind, as /metrics shows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import time

import httpx
import openai
import pytest

from conftest import metrics, wait_idle
from rocmforge_core.serve import ServeOptions
from rocmforge_core.serve.server import ServerThread

LONG = {"max_tokens": 240, "temperature": 0, "frequency_penalty": 1.0, "ignore_eos": True}
STEP_DELAY = 0.01  # 240 tokens take >= 2.4 s, so every client here leaves mid-generation


@pytest.fixture(scope="module")
def server(tiny_chat_model):
    """A server whose engine steps are slowed down, so leaving mid-generation does not race the end."""
    with ServerThread(ServeOptions(model=tiny_chat_model, backend="reference", parallel=2)) as srv:
        step = srv.state.engine.step

        def slow_step(*args, **kwargs):
            time.sleep(STEP_DELAY)
            return step(*args, **kwargs)

        srv.state.engine.step = slow_step
        yield srv


def test_stream_closed_mid_way_frees_its_sequence(server):
    before = metrics(server.url)["rocmforge_cancelled_total"]
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as client:
        stream = client.completions.create(model="m", prompt="hello", stream=True, extra_body=LONG)
        got = [next(stream) for _ in range(3)]
        assert len(got) == 3
        running = metrics(server.url)
        assert running["rocmforge_sequences_running"] == 1 and running["rocmforge_kv_blocks_used"] > 0
        stream.close()
    m = wait_idle(server.url)
    assert m["rocmforge_sequences_running"] == 0 and m["rocmforge_kv_blocks_used"] == 0
    assert m["rocmforge_cancelled_total"] == before + 1


def test_killed_client_frees_its_sequence(server):
    before = metrics(server.url)["rocmforge_cancelled_total"]
    script = textwrap.dedent(f"""
        import httpx, sys
        body = {dict(prompt="the model", stream=True, **LONG)!r}
        with httpx.stream("POST", "{server.url}/v1/completions", json=body, timeout=60) as r:
            for i, line in enumerate(r.iter_lines()):
                if i == 4:
                    print("streaming", flush=True)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "streaming"
        assert metrics(server.url)["rocmforge_sequences_running"] == 1
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
        child.stdout.close()
    m = wait_idle(server.url)
    assert m["rocmforge_sequences_running"] == 0 and m["rocmforge_kv_blocks_used"] == 0
    assert m["rocmforge_cancelled_total"] == before + 1


def test_non_streaming_client_that_gives_up_frees_its_sequence(server):
    before = metrics(server.url)["rocmforge_cancelled_total"]
    try:
        httpx.post(f"{server.url}/v1/completions", json={"prompt": "hello world", **LONG},
                   timeout=httpx.Timeout(30, read=0.3))
        raise AssertionError("the request should have timed out")
    except httpx.ReadTimeout:
        pass
    m = wait_idle(server.url)
    assert m["rocmforge_sequences_running"] == 0 and m["rocmforge_kv_blocks_used"] == 0
    assert m["rocmforge_cancelled_total"] == before + 1
