"""`serve -n N` and `--temp T`: a request's max_tokens and temperature when it gives none, as llama-server's -n and
--temp; a request's own values win."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from conftest import CLI, serve_process
from rocmforge_core.serve import ServeOptions, ServerState
from rocmforge_core.serve.server import ServerThread

PROMPT = {"prompt": "hello", "ignore_eos": True}


@pytest.fixture(scope="module")
def defaults_server(tiny_chat_model):
    with ServerThread(ServeOptions(model=tiny_chat_model, backend="reference", parallel=2, max_tokens=5,
                                   temperature=0.0)) as srv:
        yield srv


def completion(c: httpx.Client, **fields) -> dict:
    r = c.post("/v1/completions", json={**PROMPT, **fields})
    assert r.status_code == 200, r.text
    return r.json()


def test_max_tokens_default_applies_only_where_the_request_gives_none(defaults_server):
    with httpx.Client(base_url=defaults_server.url, timeout=60) as c:
        assert completion(c)["usage"]["completion_tokens"] == 5
        assert completion(c, max_tokens=2)["usage"]["completion_tokens"] == 2
        assert completion(c, max_tokens=9)["usage"]["completion_tokens"] == 9
        chat = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                     "ignore_eos": True})
        assert chat.status_code == 200 and chat.json()["usage"]["completion_tokens"] == 5


def test_temperature_default_applies_only_where_the_request_gives_none(defaults_server):
    with httpx.Client(base_url=defaults_server.url, timeout=60) as c:
        greedy = completion(c, max_tokens=24, temperature=0)["choices"][0]["text"]
        # the server's temperature 0 makes seeded requests greedy ...
        assert {completion(c, max_tokens=24, seed=s)["choices"][0]["text"] for s in (1, 2, 3)} == {greedy}
        # ... and a request's own temperature still samples (24 tokens of a random model at temperature 2)
        sampled = {completion(c, max_tokens=24, seed=s, temperature=2.0, top_k=0, top_p=1.0, min_p=0.0)
                   ["choices"][0]["text"] for s in (1, 2, 3)}
        assert sampled != {greedy}


def test_no_max_tokens_default_generates_up_to_the_context(tiny_chat_model):
    with ServerThread(ServeOptions(model=tiny_chat_model, backend="reference", parallel=1, ctx_size=32)) as srv:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            r = completion(c, temperature=0)
            assert r["choices"][0]["finish_reason"] == "length"
            assert r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"] == 32


@pytest.mark.parametrize("options, message", [
    ({"max_tokens": -1}, "max_tokens must be >= 0"),
    ({"temperature": 3.0}, "temperature must be a finite number in [0, 2], got 3.0"),
])
def test_bad_defaults_are_refused(tiny_chat_model, options, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ServerState(ServeOptions(model=tiny_chat_model, **options))


@pytest.mark.parametrize("args, message", [
    (["-n", "-2"], "-n takes a number of tokens >= 0, or -1 for no limit, got -2"),
    (["--temp", "nan"], "--temperature must be a finite number in [0, 2], got nan"),
])
def test_the_cli_refuses_bad_defaults_in_one_sentence(tiny_chat_model, args, message):
    r = subprocess.run([*CLI, "serve", "--model", str(tiny_chat_model), "--port", "0", *args], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_serve_takes_llama_server_spellings(tiny_chat_model):
    with serve_process("--model", str(tiny_chat_model), "--backend", "reference", "-n", "3", "--temp", "0") as (
            proc, url):
        assert proc.poll() is None, proc.stderr.read()
        with httpx.Client(base_url=url, timeout=60) as c:
            assert completion(c)["usage"]["completion_tokens"] == 3
            assert {completion(c, seed=s)["choices"][0]["text"] for s in (1, 2)} == \
                {completion(c, temperature=0)["choices"][0]["text"]}
