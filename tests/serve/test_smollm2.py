"""A few requests against the real SmolLM2-135M-Instruct (reference backend): its chat template from the GGUF,
its end-of-turn token, and answers equal to the engine's own greedy generation, alone and batched."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from rocmforge_core.engine import Engine, Model, SamplingParams
from rocmforge_core.serve import ServeOptions
from rocmforge_core.serve.server import ServerThread

pytestmark = pytest.mark.slow
QUESTIONS = ["What is 2+2?", "Name a primary color.", "Say hello."]
MAX_TOKENS = 12


@pytest.fixture(scope="module")
def smol_server(smollm2_path):
    with ServerThread(ServeOptions(model=smollm2_path, backend="reference", parallel=4, ctx_size=512)) as srv:
        yield srv


@pytest.fixture(scope="module")
def expected(smollm2_path):
    """Greedy answers of Engine.generate, as `rocmforge run --chat --temperature 0` computes them."""
    model = Model(smollm2_path, backend="reference")
    try:
        engine, tok = Engine(model, n_ctx=512), model.tokenizer
        out = {}
        for q in QUESTIONS:
            ids = tok.encode(tok.apply_chat_template([{"role": "user", "content": q}]), add_special=False,
                             special=True)
            gen = engine.generate(ids, max_tokens=MAX_TOKENS, sampling=SamplingParams(temperature=0),
                                  eog_ids=tok.eog_ids, decoder=tok.stream())
            out[q] = (gen.text, len(ids), gen.finish_reason)
        return out
    finally:
        model.close()


def test_chat_answer_equals_the_engine(smol_server, expected):
    with openai.OpenAI(base_url=f"{smol_server.url}/v1", api_key="x", max_retries=0, timeout=300) as client:
        r = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": QUESTIONS[0]}],
                                           max_tokens=MAX_TOKENS, temperature=0)
    text, n_prompt, finish = expected[QUESTIONS[0]]
    assert r.choices[0].message.content == text and "4" in text
    assert r.usage.prompt_tokens == n_prompt
    assert r.choices[0].finish_reason == ("stop" if finish == "eos" else "length")


def test_concurrent_streams_equal_the_engine(smol_server, expected):
    async def one(client, q):
        body = {"messages": [{"role": "user", "content": q}], "max_tokens": MAX_TOKENS, "temperature": 0,
                "stream": True}
        text = []
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: {"):
                    text.append(httpx.Response(200, content=line[6:]).json()["choices"][0]["delta"]
                                .get("content") or "")
        return "".join(text)

    async def all_at_once():
        async with httpx.AsyncClient(base_url=smol_server.url, timeout=300) as client:
            return await asyncio.gather(*(one(client, q) for q in QUESTIONS))

    assert asyncio.run(all_at_once()) == [expected[q][0] for q in QUESTIONS]


def test_tokenize_round_trip_and_model_info(smol_server):
    with httpx.Client(base_url=smol_server.url, timeout=60) as c:
        ids = c.post("/tokenize", json={"content": "Hello, world! ünïcödé"}).json()["tokens"]
        assert c.post("/detokenize", json={"tokens": ids}).json()["content"] == "Hello, world! ünïcödé"
        meta = c.get("/v1/models").json()["data"][0]["meta"]
        assert meta["n_ctx"] == 512 and meta["n_vocab"] == 49152 and meta["architecture"] == "llama"


WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather of a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
EARLIER = [{"role": "user", "content": "What is the weather in Paris?"},
           {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
               "name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
           {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
           {"role": "assistant", "content": "It is sunny in Paris, 21 C."},
           {"role": "user", "content": "What is the weather in Berlin?"}]


def test_a_tool_call_from_the_real_model(smol_server):
    """SmolLM2's template renders no tools: they are described in a system message, the earlier call and its
    result rewritten as Hermes text; after that one example the 135M model calls the tool for Berlin, greedily."""
    with openai.OpenAI(base_url=f"{smol_server.url}/v1", api_key="x", max_retries=0, timeout=300) as client:
        r = client.chat.completions.create(model="smollm2", messages=EARLIER, tools=[WEATHER], max_tokens=40,
                                           temperature=0)
        (call,) = r.choices[0].message.tool_calls
        assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Berlin"}
        chunks = list(client.chat.completions.create(model="smollm2", messages=EARLIER, tools=[WEATHER],
                                                     max_tokens=40, temperature=0, stream=True))
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or ()) if c.choices]
    assert [(tc.function.name, json.loads(tc.function.arguments)) for tc in calls] == [("get_weather",
                                                                                       {"city": "Berlin"})]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ""
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
