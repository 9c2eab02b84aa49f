"""Prefix caching, preemption by recompute and the latency histograms, through the official ``openai`` client:
answers with a cache hit or a preemption equal those without, and /metrics and the usage say what happened."""

from __future__ import annotations

import asyncio
import re

import httpx
import openai
import pytest

from conftest import metrics, serve_process, wait_idle
from rocmforge_core.registry import get_registry
from rocmforge_core.serve import ServeOptions
from rocmforge_core.serve.server import ServerThread

GREEDY = {"temperature": 0, "frequency_penalty": 1.0}
SYSTEM = "you are the model; answer the token of the world " * 3  # a long shared system prompt
QUESTIONS = ["hello", "the world", "is an model", "token the hello"]


def host_backend() -> str:
    cpu = get_registry().backends.get("cpu")
    return "cpu" if cpu is not None and cpu.available() else "reference"


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)


def chat(c: openai.OpenAI, question: str, max_tokens: int = 10):
    return c.chat.completions.create(model="tiny-chat", max_tokens=max_tokens, **GREEDY, messages=[
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": question}])


def streams_together(url: str, prompts: list[list[int]], max_tokens: int) -> list[str]:
    """The streamed texts of greedy completions of ``prompts``, all sent at once."""
    async def streamed(ac: openai.AsyncOpenAI, p):
        stream = await ac.completions.create(model="tiny-chat", prompt=p, max_tokens=max_tokens, stream=True,
                                             extra_body={"ignore_eos": True}, **GREEDY)
        return "".join([chunk.choices[0].text async for chunk in stream])

    async def together():
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120) as ac:
            return await asyncio.gather(*(streamed(ac, p) for p in prompts))
    return asyncio.run(together())


@pytest.fixture(scope="module")
def answers_without_cache(tiny_chat_model):
    with ServerThread(ServeOptions(model=tiny_chat_model, backend=host_backend(), parallel=2,
                                   prefix_cache=False)) as srv, client(srv.url) as c:
        out = [chat(c, q) for q in QUESTIONS]
        m = metrics(srv.url)
    assert m["rocmforge_prefix_cache_hits_total"] == 0 and m["rocmforge_kv_blocks_cached"] == 0
    assert all(r.usage.prompt_tokens_details.cached_tokens == 0 for r in out)
    return [r.choices[0].message.content for r in out]


def test_a_shared_system_prompt_is_computed_once(tiny_chat_model, answers_without_cache):
    with ServerThread(ServeOptions(model=tiny_chat_model, backend=host_backend(), parallel=2)) as srv, \
            client(srv.url) as c:
        out = [chat(c, q) for q in QUESTIONS]
        m = wait_idle(srv.url)
    assert [r.choices[0].message.content for r in out] == answers_without_cache
    cached = [r.usage.prompt_tokens_details.cached_tokens for r in out]
    assert cached[0] == 0 and all(n >= 48 and n % 16 == 0 for n in cached[1:]), cached
    prompts = sum(r.usage.prompt_tokens for r in out)
    assert m["rocmforge_prefix_cache_queries_total"] == prompts
    assert m["rocmforge_prefix_cache_hits_total"] == sum(cached)
    assert m["rocmforge_prefix_cache_hit_rate"] == pytest.approx(sum(cached) / prompts, abs=1e-5)
    assert m["rocmforge_prompt_tokens_total"] < prompts  # the cached tokens were not run through the model
    assert m["rocmforge_kv_blocks_used"] == 0 and m["rocmforge_kv_blocks_cached"] > 0


def test_preempted_streams_continue_and_equal_answers_alone(tiny_chat_model):
    """KV room for 96 tokens (6 blocks) and 4 slots: four streams of 16 + 60 tokens cannot all grow at once, so
    the youngest are preempted and recomputed; every streamed answer equals the same request alone."""
    prompts = [[5 + i, 40, 41, 42] * 4 for i in range(4)]
    with ServerThread(ServeOptions(model=tiny_chat_model, backend=host_backend(), parallel=4,
                                   kv_size=96)) as srv:
        with client(srv.url) as c:
            alone = [c.completions.create(model="tiny-chat", prompt=p, max_tokens=60, **GREEDY,
                                          extra_body={"ignore_eos": True}).choices[0].text for p in prompts]
            before = metrics(srv.url)["rocmforge_preemptions_total"]

        texts = streams_together(srv.url, prompts, 60)
        m = wait_idle(srv.url)
        with client(srv.url) as c, pytest.raises(openai.BadRequestError, match="the context holds 96"):
            c.completions.create(model="tiny-chat", prompt=[5] * 100, max_tokens=1)  # can never fit
    assert texts == alone and len(set(alone)) == len(alone)
    assert m["rocmforge_preemptions_total"] > before == 0
    assert (m["rocmforge_sequences_running"], m["rocmforge_kv_blocks_used"]) == (0, 0)


def test_metrics_have_latency_histograms_and_help_for_every_family(tiny_chat_model):
    with ServerThread(ServeOptions(model=tiny_chat_model, backend="reference", parallel=2)) as srv:
        with client(srv.url) as c:
            for q in QUESTIONS[:3]:
                chat(c, q, max_tokens=5)
        m = wait_idle(srv.url)
        r = httpx.get(f"{srv.url}/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=")
    text = r.text
    families = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    assert families == set(re.findall(r"^# HELP (\S+) \S", text, re.M))
    for name in ("time_to_first_token_seconds", "inter_token_latency_seconds", "e2e_request_latency_seconds",
                 "request_queue_time_seconds"):
        assert f"rocmforge_{name}" in families and f'rocmforge_{name}_bucket{{le="+Inf"}}' in m
    assert m["rocmforge_time_to_first_token_seconds_count"] == 3
    assert m["rocmforge_request_queue_time_seconds_count"] == 3
    assert m["rocmforge_e2e_request_latency_seconds_count"] == 3
    assert m["rocmforge_inter_token_latency_seconds_count"] == 3 * 4  # 5 tokens each: 4 gaps
    assert 0 < m["rocmforge_time_to_first_token_seconds_sum"] < m["rocmforge_e2e_request_latency_seconds_sum"]
    for name in ("requests_total", "generation_tokens_total", "kv_blocks_used", "decode_steps_total",
                 "process_resident_memory_bytes", "preemptions_total", "prefix_cache_hit_rate"):
        assert f"rocmforge_{name}" in families, name


def test_serve_no_prefix_cache_switch(tiny_chat_model):
    with serve_process("--model", str(tiny_chat_model), "--backend", "reference", "--no-prefix-cache",
                       "--no-warm-up") as (proc, url):
        assert proc.poll() is None, proc.stderr.read()
        with client(url) as c:
            first, again = chat(c, "hello", 3), chat(c, "hello", 3)
        m = metrics(url)
    assert again.usage.prompt_tokens_details.cached_tokens == 0 and m["rocmforge_prefix_cache_hits_total"] == 0
    assert again.choices[0].message.content == first.choices[0].message.content
