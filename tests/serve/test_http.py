"""The HTTP layer driven with raw HTTP (httpx): endpoints, response shapes, SSE, and 4xx for bad requests."""

from __future__ import annotations

import json

import httpx
import pytest

from conftest import metrics, wait_idle
from rocmforge_core.serve import ServeOptions
from rocmforge_core.serve.server import ServerThread

GREEDY = {"temperature": 0, "frequency_penalty": 1.0}


def sse_events(response: httpx.Response) -> list:
    """The data payloads of an SSE response ("[DONE]" kept as a string)."""
    events = []
    for block in response.text.split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            data = block[len("data: "):]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_health_models_and_tokenizer_round_trip(http):
    assert http.get("/health").json() == {"status": "ok"}
    models = http.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == "tiny-chat"
    assert models["data"][0]["meta"]["n_ctx"] == 256
    ids = http.post("/tokenize", json={"content": "hello world"}).json()["tokens"]
    assert ids and all(isinstance(i, int) for i in ids)
    assert http.post("/tokenize", json={"content": "hello", "add_special": True}).json()["tokens"][0] == 1
    assert http.post("/detokenize", json={"tokens": ids}).json() == {"content": "hello world"}


def test_completion_shape_and_usage(http):
    r = http.post("/v1/completions", json={"prompt": "hello world", "max_tokens": 7, **GREEDY})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    (choice,) = body["choices"]
    assert choice["finish_reason"] in ("stop", "length") and isinstance(choice["text"], str)
    prompt = len(http.post("/tokenize", json={"content": "hello world", "add_special": True}).json()["tokens"])
    assert body["usage"]["prompt_tokens"] == prompt
    assert body["usage"]["total_tokens"] == prompt + body["usage"]["completion_tokens"]
    assert body["usage"]["completion_tokens"] <= 7


def test_token_id_prompt_equals_text_prompt(http):
    ids = http.post("/tokenize", json={"content": "the model", "add_special": True}).json()["tokens"]
    a = http.post("/v1/completions", json={"prompt": "the model", "max_tokens": 6, **GREEDY}).json()
    b = http.post("/v1/completions", json={"prompt": ids, "max_tokens": 6, **GREEDY}).json()
    assert a["choices"][0]["text"] == b["choices"][0]["text"]


def test_chat_stream_equals_whole_answer(http):
    req = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 12, **GREEDY}
    whole = http.post("/v1/chat/completions", json=req).json()
    assert whole["object"] == "chat.completion"
    assert whole["choices"][0]["message"]["role"] == "assistant"
    r = http.post("/v1/chat/completions", json={**req, "stream": True, "stream_options": {"include_usage": True}})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r)
    assert events[-1] == "[DONE]"
    chunks, usage = events[:-2], events[-2]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    cached = usage["usage"].pop("prompt_tokens_details")["cached_tokens"]
    whole["usage"].pop("prompt_tokens_details")
    assert usage["choices"] == [] and usage["usage"] == whole["usage"]
    assert cached == (whole["usage"]["prompt_tokens"] - 1) // 16 * 16  # the same prompt again: a prefix cache hit


def test_seeded_sampling_is_reproducible(http):
    req = {"prompt": "hello", "max_tokens": 10, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0,
           "seed": 1234}
    a, b = (http.post("/v1/completions", json=req).json()["choices"][0]["text"] for _ in range(2))
    assert a == b
    texts = {http.post("/v1/completions", json={**req, "seed": s}).json()["choices"][0]["text"] for s in range(4)}
    assert len(texts) > 1  # the seed matters


def test_stop_string_ends_the_text(http):
    base = http.post("/v1/completions", json={"prompt": "the", "max_tokens": 12, **GREEDY}).json()
    text = base["choices"][0]["text"]
    if len(text) < 4:
        pytest.skip(f"the tiny model's greedy text is too short to cut: {text!r}")
    stop = text[2:4]
    cut = http.post("/v1/completions", json={"prompt": "the", "max_tokens": 12, "stop": [stop], **GREEDY}).json()
    assert cut["choices"][0]["text"] == text[:text.find(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"


def test_max_tokens_zero_and_context_cap(http):
    r = http.post("/v1/completions", json={"prompt": "hi", "max_tokens": 0}).json()
    assert r["choices"][0]["text"] == "" and r["choices"][0]["finish_reason"] == "length"
    assert r["usage"]["completion_tokens"] == 0
    ids = [5] * 250  # 6 tokens of room in a context of 256
    r = http.post("/v1/completions", json={"prompt": ids, "max_tokens": 100, "ignore_eos": True, **GREEDY}).json()
    assert r["usage"]["completion_tokens"] == 6 and r["choices"][0]["finish_reason"] == "length"


BAD = [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"\xff\xfe{}", "not valid JSON"),
    (b"[" * 100_000, "nested too deeply"),
    (b'{"prompt": "x", "temperature": NaN}', "temperature must be a finite number in [0, 2], got nan"),
    (b'{"prompt": "x", "temperature": 1e400}', "temperature must be a finite number in [0, 2], got inf"),
    (b'{"prompt": "x", "max_tokens": NaN}', "'max_tokens' must be an integer, got NaN"),
    ({"prompt": "x", "max_tokens": -1}, "'max_tokens' must be >= 0"),
    ({"prompt": "x", "max_tokens": "5"}, "'max_tokens' must be an integer"),
    ({"prompt": "x", "max_tokens": 2.5}, "'max_tokens' must be an integer"),
    ({"prompt": "x", "temperature": "hot"}, "temperature must be a finite number in [0, 2], got 'hot'"),
    ({"prompt": "x", "temperature": 9}, "temperature must be a finite number in [0, 2], got 9"),
    ({"prompt": "x", "top_p": 0}, "top_p must be a finite number in (0, 1], got 0"),
    ({"prompt": "x", "top_k": -3}, "top_k must be an integer in [0, 2147483647], got -3"),
    ({"prompt": "x", "top_k": 2.5}, "top_k must be an integer in [0, 2147483647], got 2.5"),
    ({"prompt": "x", "stream": "yes"}, "'stream' must be a boolean"),
    ({"prompt": "x", "stop": [1, 2]}, "'stop' must be a string or an array of strings"),
    ({"prompt": "x", "n": 0}, "'n' must be >= 1, got 0"),
    ({"prompt": "x", "n": 1000}, "'n' must be <= 128, got 1000"),
    ({"prompt": "x", "n": True}, "'n' must be an integer, got a boolean"),
    ({"prompt": "x", "best_of": 3}, "'best_of' must be 1"),
    ({"prompt": "x", "functions": [{"name": "f"}]}, "send 'tools' instead"),
    ({"prompt": "x", "stop": ["a"] * 17}, "'stop' may hold at most 16 strings"),
    ({"prompt": "x", "stream_options": {"include_usage": 1}}, "'stream_options.include_usage' must be a boolean"),
    ({"prompt": "x", "logprobs": 30}, "'logprobs' must be an integer in [0, 20], got 30"),
    ({"prompt": "x", "seed": "s"}, "seed must be an integer in"),
    ({"prompt": 5}, "'prompt' must be a string or a non-empty array of token ids"),
    ({"prompt": []}, "'prompt' must be a string or a non-empty array of token ids"),
    ({"prompt": [1, 99999]}, "outside the vocabulary"),
    ({"prompt": ["a", "b"]}, "batches of prompts are not supported"),
    ({"prompt": [7] * 300}, "the context holds 256"),
    ({"prompt": "x", "stream_options": 3}, "'stream_options' must be an object"),
]


@pytest.mark.parametrize("body,message", BAD, ids=[m for _, m in BAD])
def test_bad_completion_requests_get_400(http, body, message):
    kwargs = {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, bytes) \
        else {"json": body}
    r = http.post("/v1/completions", **kwargs)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert message in error["message"] and error["type"] == "invalid_request_error"


@pytest.mark.parametrize("body,message", [
    ({}, "'messages' must be a non-empty array"),
    ({"messages": "hi"}, "'messages' must be a non-empty array"),
    ({"messages": [{"content": "hi"}]}, "must be an object with a string 'role'"),
    ({"messages": [{"role": "user", "content": 5}]}, "content must be a string or an array of text parts"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "only text parts"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": -2}, "must be >= 0"),
    ({"messages": [{"role": "user", "content": "hello " * 300}]}, "the context holds 256"),
])
def test_bad_chat_requests_get_400(http, body, message):
    r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == 400 and message in r.json()["error"]["message"], r.text


def test_routing_errors_and_oversized_bodies_are_json(http, server):
    r = http.get("/v1/nothing")
    assert r.status_code == 404 and "no route" in r.json()["error"]["message"]
    r = http.get("/v1/completions")
    assert r.status_code == 405 and r.json()["error"]["message"]
    big = b'{"prompt": "' + b"a" * (server.state.options.max_body_bytes + 10) + b'"}'
    r = http.post("/v1/completions", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = http.post("/detokenize", json={"tokens": [1, -4]})
    assert r.status_code == 400 and "outside the vocabulary" in r.json()["error"]["message"]
    r = http.post("/tokenize", json={"content": 3})
    assert r.status_code == 400


def test_bad_requests_leave_nothing_behind(http, server):
    for body, _ in BAD:
        if not isinstance(body, bytes):
            http.post("/v1/completions", json={**body, "stream": True} if "stream" not in body else body)
    m = wait_idle(server.url)
    assert m["rocmforge_kv_blocks_used"] == 0 and m["rocmforge_sequences_running"] == 0
    assert http.get("/health").status_code == 200


def test_metrics_count_requests_and_tokens(http, server):
    before = metrics(server.url)
    r = http.post("/v1/completions", json={"prompt": "hello", "max_tokens": 5, "ignore_eos": True, **GREEDY})
    assert r.status_code == 200
    after = metrics(server.url)
    key = 'rocmforge_requests_total{endpoint="completions",status="200"}'
    assert after[key] == before.get(key, 0) + 1
    assert after["rocmforge_generation_tokens_total"] == before["rocmforge_generation_tokens_total"] + 5
    assert after["rocmforge_prompt_tokens_total"] >= before["rocmforge_prompt_tokens_total"] + 2
    assert after["rocmforge_kv_blocks_total"] > 0 and after["rocmforge_process_resident_memory_bytes"] > 0
    text = http.get("/metrics").text
    assert "# TYPE rocmforge_requests_total counter" in text and "rocmforge_fallback_sites" in text


def test_api_key(tiny_chat_model):
    with ServerThread(ServeOptions(model=tiny_chat_model, backend="reference", parallel=1, api_key="s3cret")) as s:
        with httpx.Client(base_url=s.url, timeout=30) as c:
            assert c.get("/health").status_code == 200  # health and metrics stay open for probes
            r = c.post("/v1/completions", json={"prompt": "hi", "max_tokens": 1})
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
            r = c.post("/v1/completions", json={"prompt": "hi", "max_tokens": 1},
                       headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401
            r = c.post("/v1/completions", json={"prompt": "hi", "max_tokens": 1},
                       headers={"Authorization": "Bearer s3cret"})
            assert r.status_code == 200
            assert c.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_health_is_503_while_loading_and_on_failure(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 20)
    srv = ServerThread(ServeOptions(model=bad, backend="reference"))
    try:
        srv.start(wait_ready=False)
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            status = c.get("/health")
            assert status.status_code == 503 and status.json()["status"] in ("loading", "error")
            srv.state.loaded.wait(30)
            status = c.get("/health")
            assert status.status_code == 503 and status.json()["status"] == "error"
            r = c.post("/v1/completions", json={"prompt": "hi"})
            assert r.status_code == 503 and "failed to load" in r.json()["error"]["message"]
    finally:
        srv.stop()


def test_kv_size_bounds_one_sequence(tiny_chat_model):
    with ServerThread(ServeOptions(model=tiny_chat_model, backend="reference", parallel=4, kv_size=48)) as s:
        with httpx.Client(base_url=s.url, timeout=30) as c:
            r = c.post("/v1/completions", json={"prompt": [5] * 50, "max_tokens": 1})
            assert r.status_code == 400 and "the context holds 48" in r.json()["error"]["message"]
            r = c.post("/v1/completions", json={"prompt": [5] * 40, "ignore_eos": True, **GREEDY}).json()
            assert r["usage"]["completion_tokens"] == 8 and r["choices"][0]["finish_reason"] == "length"
            assert metrics(s.url)["rocmforge_kv_blocks_total"] == 3
