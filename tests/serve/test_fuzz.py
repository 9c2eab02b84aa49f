"""Whatever a client sends, the server answers 200 or a 4xx with an OpenAI-shaped error, never a 500, and
leaves no sequence or KV block behind (hypothesis draws the request bodies)."""

from __future__ import annotations

import json

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import wait_idle

FIELDS = ["prompt", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "min_p",
          "typical_p", "repeat_penalty", "presence_penalty", "frequency_penalty", "penalty_last_n", "seed",
          "stop", "stream", "stream_options", "n", "logprobs", "top_logprobs", "logit_bias", "response_format",
          "guided_regex", "grammar", "model", "ignore_eos", "echo", "tools", "tool_choice", "parallel_tool_calls",
          "input", "encoding_format", "dimensions"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.integers(-3, 300),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
values = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.sampled_from(["role", "content", "type", "text",
                                                                      "include_usage", "function", "name",
                                                                      "arguments", "parameters", "tool_calls"]),
                                                      children, max_size=3)),
    max_leaves=8)
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", 3]),
                                 "content": st.one_of(st.text(max_size=30), values)})
bodies = st.dictionaries(st.sampled_from(FIELDS), values, max_size=6).flatmap(
    lambda body: st.one_of(
        st.just(body),
        st.builds(lambda m, p: {**body, "messages": m, "prompt": p, "input": p},
                  st.lists(message, min_size=1, max_size=3), st.one_of(st.text(max_size=30),
                                                                      st.lists(st.integers(-5, 400), max_size=8)))))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, route=st.sampled_from(["/v1/completions", "/v1/chat/completions", "/v1/embeddings"]))
def test_random_bodies_get_200_or_4xx(http, body, route):
    for name, most in (("max_tokens", 8), ("n", 3)):
        if isinstance(body.get(name), int) and body[name] > most:
            body[name] = most  # keep generations short; the value's type and sign still vary
    r = http.post(route, content=json.dumps(body, allow_nan=True), headers={"content-type": "application/json"})
    assert r.status_code in (200, 400), (r.status_code, r.text)
    if r.status_code == 400:
        error = r.json()["error"]
        assert error["message"] and error["type"] == "invalid_request_error"


def test_nothing_left_after_random_bodies(server):
    m = wait_idle(server.url)
    assert (m["rocmforge_sequences_running"], m["rocmforge_kv_blocks_used"]) == (0, 0)
    assert httpx.get(f"{server.url}/health").status_code == 200
    assert m.get('rocmforge_requests_total{endpoint="other",status="500"}', 0) == 0
