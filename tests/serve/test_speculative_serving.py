"""Speculative decoding in the server: the batcher verifying every running sequence's drafts in its decode step
gives each request the tokens Engine.generate gives it alone, with prompt lookup and with a draft model; the
draft counters; the openai client against a speculating server."""

from __future__ import annotations

import openai
import pytest

from rocmforge_core.engine import Engine, Model, SamplingParams
from rocmforge_core.engine.draft_model import DraftModel
from rocmforge_core.engine.speculative import PromptLookup, Speculation
from rocmforge_core.serve import ServeOptions
from rocmforge_core.serve.batcher import Batcher, Sequence
from rocmforge_core.serve.metrics import Metrics
from rocmforge_core.serve.server import ServerThread

from conftest import metrics
from test_batcher import Log

KINDS = [SamplingParams(temperature=0), SamplingParams(temperature=0.9, seed=4),
         SamplingParams(temperature=0, frequency_penalty=1.0), SamplingParams(temperature=1.1, top_k=8, seed=2)]


@pytest.fixture(scope="module")
def model(tiny_chat_model):
    m = Model(tiny_chat_model, backend="reference")
    yield m
    m.close()


def prompts(tok):
    return [tok.encode("the model is the model is the model is" * (1 + i % 2), add_special=True) for i in range(5)] \
        + [[9] * 40]


@pytest.mark.parametrize("drafter", ["lookup", "draft model"])
def test_speculating_batcher_answers_as_generate_alone(model, drafter):
    engine = Engine(model, max_seqs=3, n_ctx=256, prefill_chunk=32)
    batch = prompts(model.tokenizer)
    alone = [engine.generate(p, max_tokens=16, sampling=KINDS[i % 4]).ids for i, p in enumerate(batch)]
    draft = PromptLookup() if drafter == "lookup" else DraftModel(Engine(model, max_seqs=3, n_ctx=256), model)
    counters = Metrics()
    batcher = Batcher(engine, metrics=counters, speculation=Speculation(draft, 5))
    batcher.start()
    try:
        log = Log()
        seqs = [Sequence(p, 16, KINDS[i % 4], log.sink(i)) for i, p in enumerate(batch)]
        for s in seqs:
            batcher.submit(s)  # 6 requests in 3 slots
        log.wait(lambda lg: len(lg.done) == len(seqs))
        assert [s.ids for s in seqs] == alone
        assert engine.cache.blocks_in_use() == 0 and not batcher.running and not batcher.waiting
        assert counters.draft_tokens > 0 and 0 < counters.draft_accepted <= counters.draft_tokens
        assert counters.completion_tokens == sum(map(len, alone))
        if drafter == "draft model":
            assert draft.engine.cache.blocks_in_use() == 0 and not draft._slots  # released with each request
    finally:
        batcher.stop()


def test_openai_client_against_a_speculating_server(tiny_chat_model):
    """Greedy chat completions, whole and streamed, equal a plain server's; /metrics counts the drafts."""
    messages = [{"role": "user", "content": "the model is the model is the model is the model"}]
    answers = {}
    for name, extra in (("plain", {}), ("lookup", {"lookup_ngram": 2, "draft_max": 4})):
        with ServerThread(ServeOptions(model=tiny_chat_model, backend="reference", parallel=2, **extra)) as srv:
            with openai.OpenAI(base_url=f"{srv.url}/v1", api_key="unused", max_retries=0, timeout=60) as client:
                whole = client.chat.completions.create(model="m", messages=messages, max_tokens=24, temperature=0)
                stream = client.chat.completions.create(model="m", messages=messages, max_tokens=24, temperature=0,
                                                        stream=True)
                streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            answers[name] = (whole.choices[0].message.content, streamed, whole.usage.completion_tokens)
            counted = metrics(srv.url)
        if name == "lookup":
            assert counted["rocmforge_draft_tokens_total"] > 0
            assert 0 < counted["rocmforge_draft_accepted_total"] <= counted["rocmforge_draft_tokens_total"]
        else:
            assert counted["rocmforge_draft_tokens_total"] == 0
    assert answers["lookup"] == answers["plain"] and answers["plain"][0] == answers["plain"][1]
