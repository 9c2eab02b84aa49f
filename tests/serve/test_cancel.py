"""Clients that leave: a stream closed mid-way, a client process killed mid-stream, a non-streaming client that
times out. Each must leave no sequence and no KV block behind, as /metrics shows."""

from __future__ import annotations

import concurrent.futures
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


def slowed(srv: ServerThread) -> ServerThread:
    """Slow the server's engine steps down, so that leaving mid-generation does not race its end."""
    step = srv.state.engine.step

    def slow_step(*args, **kwargs):
        time.sleep(STEP_DELAY)
        return step(*args, **kwargs)

    srv.state.engine.step = slow_step
    return srv


@pytest.fixture(scope="module")
def server(tiny_chat_model):
    with ServerThread(ServeOptions(model=tiny_chat_model, backend="reference", parallel=2)) as srv:
        yield slowed(srv)


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


def test_full_queue_answers_503_and_waiting_requests_run_later(tiny_chat_model):
    with ServerThread(ServeOptions(model=tiny_chat_model, backend="reference", parallel=1, max_queue=1)) as srv:
        slowed(srv)
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            with c.stream("POST", "/v1/completions", json={"prompt": "a", "stream": True, **LONG}) as first:
                lines = first.iter_lines()  # kept: dropping the iterator would close the response
                next(lines)  # it holds the only slot
                with concurrent.futures.ThreadPoolExecutor(1) as pool:
                    queued = pool.submit(c.post, "/v1/completions", json={"prompt": "b", "max_tokens": 3})
                    deadline = time.monotonic() + 30
                    while metrics(srv.url)["rocmforge_queue_depth"] < 1:
                        assert time.monotonic() < deadline
                        time.sleep(0.01)
                    r = c.post("/v1/completions", json={"prompt": "c", "max_tokens": 3})
                    assert r.status_code == 503 and r.json()["error"]["code"] == "queue_full"
                    assert r.headers["retry-after"] == "1"
                    first.close()  # frees the slot: the queued request runs
                    assert queued.result(30).status_code == 200
        m = wait_idle(srv.url)
        assert (m["rocmforge_sequences_running"], m["rocmforge_kv_blocks_used"]) == (0, 0)
