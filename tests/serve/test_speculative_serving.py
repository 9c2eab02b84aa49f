"""Speculative decoding in the server: the batcher verifying every running sequence's drafts in its decode step
gives each request the tokens Engine.generate gives it alone, with prompt lookup and with a draft model; the
draft counters; log-probabilities of accepted draft tokens; a grammar-constrained sequence drafts nothing; the
openai client against a speculating server."""

from __future__ import annotations

import numpy as np
import openai
import pytest

from rocmforge_core.engine import Engine, SamplingParams
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


def _scored(model, speculation, **rules):
    """Each sequence's tokens and (token, logprobs row) events from a batcher, speculating or not."""
    engine = Engine(model, max_seqs=3, n_ctx=256, prefill_chunk=32)
    counters = Metrics()
    batcher = Batcher(engine, metrics=counters, speculation=speculation)
    batcher.start()
    try:
        log = Log()
        seqs = [Sequence(p, 16, KINDS[i % 4], log.sink(i), **rules) for i, p in enumerate(prompts(model.tokenizer))]
        batcher.submit(*seqs)
        log.wait(lambda lg: len(lg.done) == len(seqs))
    finally:
        batcher.stop()
    scored = {i: [v for name, kind, v in log.events if name == i and kind == "logprobs"] for i in range(len(seqs))}
    return [s.ids for s in seqs], scored, counters


def test_accepted_draft_tokens_get_the_logprobs_of_their_verification_rows(model):
    """With speculation each accepted token's logprobs are those of the row that verified it: the same entries,
    token for token, as plain decoding gives."""
    plain_ids, plain, _ = _scored(model, None, logprobs=True)
    spec_ids, spec, counters = _scored(model, Speculation(PromptLookup(), 5), logprobs=True)
    assert counters.draft_accepted > 0 and spec_ids == plain_ids
    for i, ids in enumerate(plain_ids):
        assert [t for t, _ in spec[i]] == [t for t, _ in plain[i]] == [t for t in ids if t not in model.tokenizer.eog_ids]
        for (_, a), (_, b) in zip(spec[i], plain[i]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


class _Only:
    """A constraint allowing one token only, forever (the shape engine/grammar.py's Constraint has)."""
    finished = False

    def __init__(self, token, vocab):
        self.mask = np.zeros(-(-vocab // 32), dtype=np.int32)
        self.mask[token // 32] = np.int32(np.uint32(1 << token % 32).view(np.int32))

    def accept(self, token):
        assert self.mask[token // 32] & np.int32(np.uint32(1 << token % 32).view(np.int32))


def test_a_constrained_sequence_drafts_nothing(model):
    """Its mask is known for the next token only, so a speculating batcher verifies no draft of it."""
    vocab = model.config.vocab_size
    engine = Engine(model, max_seqs=1, n_ctx=256)
    counters = Metrics()
    batcher = Batcher(engine, metrics=counters, speculation=Speculation(PromptLookup(), 5))
    batcher.start()
    try:
        log = Log()
        seq = Sequence([9] * 40, 8, KINDS[0], log.sink(0), constraint=_Only(7, vocab))  # lookup would draft 9s
        batcher.submit(seq)
        log.wait(lambda lg: lg.done)
    finally:
        batcher.stop()
    assert seq.ids == [7] * 8 and counters.draft_tokens == 0


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
