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


def test_n_choices_of_a_completion(client, server):
    """n choices after one prompt: indexed, the first as the same request with n=1 (a seed moves on by one per
    choice), usage counting the prompt once and every choice's tokens."""
    kwargs = dict(model="tiny-chat", prompt="the model is", max_tokens=7, seed=11, temperature=0.9,
                  extra_body={"ignore_eos": True})
    three = client.completions.create(n=3, **kwargs)
    assert [c.index for c in three.choices] == [0, 1, 2]
    assert len({c.text for c in three.choices}) == 3  # seeds 11, 12, 13
    alone = [client.completions.create(**{**kwargs, "seed": 11 + i}).choices[0].text for i in range(3)]
    assert [c.text for c in three.choices] == alone
    one = client.completions.create(**kwargs)
    assert three.usage.prompt_tokens == one.usage.prompt_tokens
    assert three.usage.completion_tokens == 3 * one.usage.completion_tokens == 21
    greedy = client.completions.create(model="tiny-chat", prompt="hello", max_tokens=5, n=2, **GREEDY)
    assert greedy.choices[0].text == greedy.choices[1].text


def test_n_choices_of_a_chat_streamed(client, server):
    messages = [{"role": "user", "content": "hello world"}]
    kwargs = dict(model="tiny-chat", messages=messages, max_tokens=6, seed=4, temperature=0.8, n=2)
    whole = client.chat.completions.create(**kwargs)
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs))
    texts, finishes, roles = {}, {}, {}
    for chunk in chunks[:-1]:
        (c,) = chunk.choices
        texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
        roles.setdefault(c.index, c.delta.role)
        if c.finish_reason:
            finishes[c.index] = c.finish_reason
    assert roles == {0: "assistant", 1: "assistant"}
    assert [texts[i] for i in (0, 1)] == [c.message.content for c in whole.choices]
    assert [finishes[i] for i in (0, 1)] == [c.finish_reason for c in whole.choices]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens


def test_n_beyond_the_queue_is_refused(client, server):
    with pytest.raises(openai.BadRequestError, match="at most 64 requests may wait"):
        client.completions.create(model="tiny-chat", prompt="hi", max_tokens=1, n=100)


def test_a_stream_of_choices_left_early_frees_them_all(client, server):
    from conftest import wait_idle

    stream = client.completions.create(model="tiny-chat", prompt="hi", max_tokens=200, n=3, stream=True,
                                       extra_body={"ignore_eos": True})
    for _, _ in zip(range(8), stream):
        pass
    stream.close()
    m = wait_idle(server.url)
    assert (m["rocmforge_sequences_running"], m["rocmforge_queue_depth"], m["rocmforge_kv_blocks_used"]) == (0, 0, 0)


def test_retrieve_a_model_by_id(client):
    card = client.models.retrieve("tiny-chat")
    assert card.id == "tiny-chat" and card.object == "model" and card.owned_by == "rocmforge"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("gpt-4o")
    assert info.value.status_code == 404 and info.value.code == "model_not_found"
    assert "'gpt-4o' does not exist" in info.value.message
