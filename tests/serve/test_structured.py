"""Structured output (response_format, grammar, vLLM's guided_* fields), logit_bias and logprobs through the
official openai client, on the tiny chat model (random weights: only the constraints make its text parse)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import openai
import pytest

from conftest import wait_idle

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 6},
                                           "n": {"type": "integer", "minimum": 0, "maximum": 99}},
          "required": ["answer", "n"], "additionalProperties": False}
HOT = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0}


@pytest.fixture
def client(server):
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120) as c:
        yield c


def chat(client, **kwargs):
    return client.chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": "hello"}],
                                          **{"max_tokens": 120, **kwargs})


@pytest.mark.parametrize("seed", [1, 2])
def test_json_schema_answers_parse_and_match_the_schema(client, seed):
    out = chat(client, seed=seed, response_format={"type": "json_schema",
                                                   "json_schema": {"name": "reply", "schema": SCHEMA}},
               extra_body=HOT)
    choice = out.choices[0]
    assert choice.finish_reason == "stop", choice
    data = json.loads(choice.message.content)
    assert set(data) == {"answer", "n"} and isinstance(data["answer"], str) and len(data["answer"]) <= 6
    assert isinstance(data["n"], int) and 0 <= data["n"] <= 99


def test_json_object_gives_an_object_also_streamed(client):
    fmt = {"type": "json_object", "schema": {"type": "object", "properties": {"k": {"enum": ["a", "b"]}},
                                             "required": ["k"], "additionalProperties": False}}
    whole = chat(client, seed=3, response_format=fmt, extra_body=HOT)
    assert json.loads(whole.choices[0].message.content)["k"] in ("a", "b")
    stream = chat(client, seed=3, response_format=fmt, extra_body=HOT, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == whole.choices[0].message.content


@pytest.mark.parametrize("field,grammar,pattern", [
    ("guided_regex", r"[0-9]{3}-[a-z]{2}", r"[0-9]{3}-[a-z]{2}"),
    ("guided_choice", ["yes", "no", "maybe"], r"yes|no|maybe"),
    ("grammar", 'root ::= "ab" [0-9]+ "!"\n', r"ab[0-9]+!"),             # GBNF (llama-server)
    ("guided_grammar", 'start: WORD ("," WORD)~1..2\nWORD: /[a-c]{2}/\n', r"[a-c]{2}(,[a-c]{2}){1,2}"),  # Lark
])
def test_grammars_and_regexes_hold_on_completions(client, field, grammar, pattern):
    for seed in (4, 5):
        out = client.completions.create(model="tiny-chat", prompt="the", max_tokens=60, seed=seed,
                                        extra_body={field: grammar, **HOT})
        assert re.fullmatch(pattern, out.choices[0].text), out.choices[0].text
        assert out.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("body,message", [
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "nonsense"}}}},
     "the json schema is not valid: .*nonsense"),
    ({"response_format": {"type": "xml"}}, "'response_format.type' must be 'text', 'json_object' or"),
    ({"guided_regex": "[unclosed"}, "the regex is not valid: .*unclosed"),
    ({"grammar": "root ::= missing"}, "the gbnf is not valid"),
    ({"guided_regex": "a", "grammar": 'root ::= "a"'}, "give one of 'guided_regex', 'grammar'"),
    ({"guided_choice": []}, "'guided_choice' must be a non-empty array of strings"),
    ({"logit_bias": {"5": 101}}, "'logit_bias' values must be numbers in \\[-100, 100\\]"),
    ({"logit_bias": {"x": 1}}, "'logit_bias' keys must be token ids"),
    ({"logit_bias": {"999999": 1}}, "outside the vocabulary"),
    ({"logit_bias": {str(i): 1 for i in range(301)}}, "at most 300 entries"),
    ({"logprobs": 21}, "'logprobs' must be an integer in \\[0, 20\\]"),
])
def test_bad_constraints_get_400_naming_the_problem(client, body, message):
    with pytest.raises(openai.BadRequestError, match=message):
        client.completions.create(model="tiny-chat", prompt="the", max_tokens=4, extra_body=body)


def test_chat_logprob_fields_are_checked(client):
    with pytest.raises(openai.BadRequestError, match="'top_logprobs' needs 'logprobs': true"):
        chat(client, top_logprobs=3)
    with pytest.raises(openai.BadRequestError, match="'top_logprobs' must be an integer in \\[0, 20\\]"):
        chat(client, logprobs=True, top_logprobs=25)


def test_logit_bias_forces_and_bans_tokens(client, server):
    tok = server.state.tokenizer
    a = tok.token_id("a")
    forced = client.completions.create(model="tiny-chat", prompt="the", max_tokens=5, seed=1, logit_bias={a: 100},
                                       extra_body=HOT)
    assert forced.choices[0].text == "aaaaa"
    first = client.completions.create(model="tiny-chat", prompt="the", max_tokens=1, temperature=0)
    piece = first.choices[0].text
    same = {i for i in range(tok.n_vocab) if tok.token_to_piece(i).decode("utf-8", "replace") == piece}
    banned = client.completions.create(model="tiny-chat", prompt="the", max_tokens=1, temperature=0,
                                       logit_bias={i: -100 for i in same})
    assert banned.choices[0].text != piece


def test_chat_logprobs_are_the_models_and_also_streamed(client, server):
    out = chat(client, temperature=0, max_tokens=8, logprobs=True, top_logprobs=3, logit_bias={5: 3})
    content = out.choices[0].logprobs.content
    assert len(content) == out.usage.completion_tokens
    for entry in content:
        assert len(entry.top_logprobs) == 3 and entry.logprob <= 0
        alts = [t.logprob for t in entry.top_logprobs]
        assert alts == sorted(alts, reverse=True)
        assert bytes(entry.bytes).decode("utf-8", "replace") == entry.token
        assert sum(math.exp(v) for v in alts) <= 1 + 1e-5
    # greedy: the chosen token is the most likely one of the raw logits unless the bias moved it
    assert any(e.logprob == e.top_logprobs[0].logprob for e in content)
    stream = chat(client, temperature=0, max_tokens=8, logprobs=True, top_logprobs=3, logit_bias={5: 3}, stream=True)
    streamed = [e for c in stream if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in content]
    assert wait_idle(server.url)["rocmforge_sequences_running"] == 0


def test_completion_logprobs_shape(client):
    out = client.completions.create(model="tiny-chat", prompt="the model", max_tokens=6, seed=2, logprobs=2,
                                    extra_body=HOT)
    lp = out.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset)
    assert "".join(lp.tokens) == out.choices[0].text
    assert lp.text_offset == list(np.cumsum([0] + [len(t) for t in lp.tokens[:-1]]))
    assert all(len(alts) <= 2 and all(v <= 0 for v in alts.values()) for alts in lp.top_logprobs)
    plain = client.completions.create(model="tiny-chat", prompt="the model", max_tokens=6, seed=2, extra_body=HOT)
    assert plain.choices[0].text == out.choices[0].text and plain.choices[0].logprobs is None


def test_each_of_n_choices_follows_its_own_grammar_and_gets_its_own_logprobs(client):
    """n choices: one grammar state each (so every choice parses), logprobs per choice, whole and streamed; a
    completion's text_offset counts within its own choice."""
    out = chat(client, n=3, seed=5, max_tokens=40, logprobs=True, top_logprobs=1,
               extra_body={**HOT, "guided_regex": "(yes|no|maybe)!"})
    assert len(out.choices) == 3
    for choice in out.choices:
        assert re.fullmatch("(yes|no|maybe)!", choice.message.content), choice
        assert "".join(e.token for e in choice.logprobs.content) == choice.message.content
    stream = chat(client, n=3, seed=5, max_tokens=40, logprobs=True, top_logprobs=1, stream=True,
                  extra_body={**HOT, "guided_regex": "(yes|no|maybe)!"})
    texts, tokens = ["", "", ""], ["", "", ""]
    for c in stream:
        for ch in c.choices:
            texts[ch.index] += ch.delta.content or ""
            tokens[ch.index] += "".join(e.token for e in (ch.logprobs.content if ch.logprobs else []))
    assert texts == tokens == [c.message.content for c in out.choices]
    done = client.completions.create(model="tiny-chat", prompt="the model", max_tokens=5, seed=2, logprobs=0, n=2,
                                     extra_body=HOT)
    for choice in done.choices:
        lp = choice.logprobs
        assert "".join(lp.tokens) == choice.text
        assert lp.text_offset == list(np.cumsum([0] + [len(t) for t in lp.tokens[:-1]]))
