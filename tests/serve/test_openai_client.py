"""The server driven with the official ``openai`` Python client, streaming and not."""

from __future__ import annotations

import openai
import pytest

GREEDY = {"temperature": 0, "frequency_penalty": 1.0}


@pytest.fixture
def client(server):
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60) as c:
        yield c


def test_models(client):
    assert [m.id for m in client.models.list().data] == ["tiny-chat"]


def test_chat_completion_whole_and_streamed(client):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello world"}]
    whole = client.chat.completions.create(model="tiny-chat", messages=messages, max_tokens=10, **GREEDY)
    assert whole.choices[0].message.role == "assistant"
    assert whole.usage.completion_tokens <= 10 and whole.usage.prompt_tokens > 10
    stream = client.chat.completions.create(model="tiny-chat", messages=messages, max_tokens=10, stream=True,
                                            stream_options={"include_usage": True}, **GREEDY)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [whole.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_text_completion_whole_and_streamed(client):
    whole = client.completions.create(model="tiny-chat", prompt="the model is", max_tokens=9, seed=5,
                                      temperature=0.9)
    streamed = client.completions.create(model="tiny-chat", prompt="the model is", max_tokens=9, seed=5,
                                         temperature=0.9, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == whole.choices[0].text
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens


def test_extra_sampling_fields_pass_through(client):
    out = client.completions.create(model="tiny-chat", prompt="hello", max_tokens=6, temperature=0.7,
                                    extra_body={"top_k": 5, "min_p": 0.1, "seed": 3})
    again = client.completions.create(model="tiny-chat", prompt="hello", max_tokens=6, temperature=0.7,
                                      extra_body={"top_k": 5, "min_p": 0.1, "seed": 3})
    assert out.choices[0].text == again.choices[0].text


def test_errors_raise_the_clients_exceptions(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": "hi"}], n=200)
    assert "'n' must be <= 128" in info.value.message
    with pytest.raises(openai.BadRequestError, match="must be >= 0"):
        client.completions.create(model="tiny-chat", prompt="hi", max_tokens=-5)
    with pytest.raises(openai.BadRequestError, match="context holds"):
        client.completions.create(model="tiny-chat", prompt=[3] * 400, max_tokens=1)
