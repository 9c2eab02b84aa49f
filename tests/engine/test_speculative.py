"""Speculative decoding (engine/speculative.py, engine/draft_model.py): prompt lookup, the verification rules
(rows sampled as plain decoding samples them, the longest matching prefix plus the model's token, counting),
a sequence ending inside an accepted run, and generations equal to plain decoding, with a lookup drafter, an
oracle and a contrary drafter and a draft model, on the reference backend (cpu and hip: test_real_models_spec.py,
tests/hip/test_gpu.py)."""

from __future__ import annotations

import pytest

from rocmforge_core.engine import Engine, Model, SamplingParams
from rocmforge_core.engine.draft_model import DraftModel, speculation_for
from rocmforge_core.engine.sequence import Sequence
from rocmforge_core.engine.speculative import PromptLookup, Speculation, accept_verified, verification
from rocmforge_core.errors import RocmforgeError
from rocmforge_core.models.synthetic import TinyConfig, write_model

from .test_engine import Digits

GREEDY = SamplingParams(temperature=0)
SEEDED = SamplingParams(temperature=1.0, top_k=20, seed=9, repeat_penalty=1.3, penalty_last_n=6)


class Oracle:
    """Proposes the tokens a plain generation made (``wrong``: each one plus one, never right)."""

    def __init__(self, prompt, ids, wrong=False):
        self.full, self.n, self.wrong = list(prompt) + list(ids), len(prompt), wrong
        self.calls = []

    def propose(self, requests):
        out = []
        for _, context, k in requests:
            self.calls.append((len(context), k))
            assert context == self.full[:len(context)] or self.wrong, "the context must be what plain decoding made"
            draft = self.full[len(context):len(context) + k]
            out.append([(t + 1) % 96 for t in draft] if self.wrong else draft)
        return out

    def release(self, key):
        pass

    def close(self):
        pass


# -- prompt lookup ---------------------------------------------------------------------------------------------

def test_lookup_continues_the_latest_occurrence_of_the_longest_ngram():
    look = PromptLookup(ngram_max=3)
    #        0  1  2  3  4  5  6  7  8  9 10 11
    ctx = [1, 2, 3, 9, 9, 7, 2, 3, 5, 6, 1, 2, 3]
    assert look.lookup(ctx, 2) == [9, 9]  # "1 2 3" occurs at 0 (the 3-gram beats "2 3" at 6)
    assert look.lookup([5, 2, 3, 8, 4, 2, 3, 6, 0, 2, 3], 2) == [6, 0]  # the latest "2 3" with 2 tokens after it
    assert look.lookup([5, 2, 3, 8, 4, 2, 3, 6, 2, 3], 4) == [8, 4, 2, 3]  # the latest with 4 after it: the first
    assert look.lookup([4, 2, 3, 2, 3], 5) == [2, 3]  # none has 5 after it: the one with the most
    assert look.lookup([1, 2, 3, 4], 3) == []  # nothing repeats
    assert look.lookup([7], 3) == [] and look.lookup([7, 7], 0) == []
    assert PromptLookup(ngram_max=2, ngram_min=2).lookup([1, 5, 2, 1, 6, 2], 2) == []  # "6 2" never occurred
    with pytest.raises(RocmforgeError, match="1 <= min <= max"):
        PromptLookup(ngram_max=1, ngram_min=2)


def test_speculation_needs_a_draft_length():
    with pytest.raises(RocmforgeError, match="--draft-max must be at least 1"):
        Speculation(PromptLookup(), 0)


# -- the verification rules ------------------------------------------------------------------------------------

def test_verification_rows_sample_as_plain_decoding_would():
    seq = Sequence([1, 2, 3], max_tokens=10, sampling=SEEDED)
    seq.accept(4)
    rows = verification(seq, [5, 6])
    assert rows.tokens == [4, 5, 6] and rows.positions == [3, 4, 5]
    plain = []
    for token in (None, 5, 6):  # what row() says after each draft token is accepted
        if token is not None:
            seq.accept(token)
        plain.append(seq.row())
    assert [r.as_row() for r in rows.sampling] == [r.as_row() for r in plain]  # RowSampling: eq=False (mask)
    assert [r.history for r in rows.sampling] == [(1, 2, 3, 4), (1, 2, 3, 4, 5), (1, 2, 3, 4, 5, 6)]


def feed_all(seq, tokens) -> bool:
    """Accept every token; True when none ended the sequence."""
    return not any([seq.accept(t) for t in tokens])


def test_draft_room_keeps_a_run_inside_max_tokens_and_the_context():
    seq = Sequence([1, 2, 3], max_tokens=5, sampling=GREEDY, n_ctx=100)
    seq.accept(4)
    assert seq.draft_room() == 3  # 4 more tokens at most: the newest's row and 3 drafts
    seq = Sequence([1, 2, 3], max_tokens=50, sampling=GREEDY, n_ctx=8)
    seq.accept(4)  # position 3; rows may sit at positions up to 7
    assert seq.draft_room() == 4
    assert feed_all(seq, [5, 6, 7]) and seq.draft_room() == 1
    seq.accept(8)  # position 7, the last the context holds: no row after it
    assert seq.draft_room() == 0


def test_accepting_a_run_stops_at_the_first_miss_and_counts_the_hits():
    def run(draft, sampled, end_after=99):
        taken = []

        def accept(t):
            taken.append(t)
            return len(taken) >= end_after
        return accept_verified(draft, sampled, accept), taken

    assert run([5, 6, 7], [5, 6, 7, 8]) == (3, [5, 6, 7, 8])  # every draft and the model's next token
    assert run([5, 6, 7], [5, 9, 7, 8]) == (1, [5, 9])  # the miss is the model's own token, kept
    assert run([5, 6, 7], [9, 6, 7, 8]) == (0, [9])
    assert run([], [4]) == (0, [4])
    assert run([5, 6, 7], [5, 6, 7, 8], end_after=2) == (2, [5, 6])  # the sequence ended inside the run


# -- generations equal to plain decoding -----------------------------------------------------------------------

PROMPT = [3, 4, 5, 6, 3, 4, 5, 6, 3, 4]


@pytest.mark.parametrize("sampling", [GREEDY, SEEDED], ids=["greedy", "seeded"])
def test_lookup_generation_equals_plain(model, sampling):
    engine = Engine(model, n_ctx=64)
    plain = engine.generate(PROMPT, max_tokens=30, sampling=sampling)
    look = engine.generate(PROMPT, max_tokens=30, sampling=sampling, speculation=Speculation(PromptLookup(), 4))
    assert look.ids == plain.ids and look.finish_reason == plain.finish_reason
    s = look.stats
    assert s.draft_tokens > 0 and 0 <= s.draft_accepted <= s.draft_tokens
    assert s.decode_steps == len(plain.ids) - 1 - s.draft_accepted  # each accepted draft saved a step
    assert plain.stats.decode_steps == len(plain.ids) - 1


@pytest.mark.parametrize("sampling", [GREEDY, SEEDED], ids=["greedy", "seeded"])
def test_oracle_drafts_are_all_accepted_and_contrary_ones_none(model, sampling):
    engine = Engine(model, n_ctx=64)
    plain = engine.generate(PROMPT, max_tokens=25, sampling=sampling)
    right = engine.generate(PROMPT, max_tokens=25, sampling=sampling,
                            speculation=Speculation(Oracle(PROMPT, plain.ids), 5))
    assert right.ids == plain.ids
    # 24 tokens after the prefill's: four steps of 5 drafts and the model's next token
    assert right.stats.draft_accepted == right.stats.draft_tokens == 20 and right.stats.decode_steps == 4
    wrong = engine.generate(PROMPT, max_tokens=25, sampling=sampling,
                            speculation=Speculation(Oracle(PROMPT, plain.ids, wrong=True), 5))
    assert wrong.ids == plain.ids and wrong.stats.draft_accepted == 0 and wrong.stats.decode_steps == 24


def test_max_tokens_cuts_a_run_and_drafts_never_pass_it(model):
    engine = Engine(model, n_ctx=64)
    plain = engine.generate(PROMPT, max_tokens=9, sampling=GREEDY)
    oracle = Oracle(PROMPT, plain.ids + [0] * 20)
    gen = engine.generate(PROMPT, max_tokens=9, sampling=GREEDY, speculation=Speculation(oracle, 5))
    assert gen.ids == plain.ids and gen.finish_reason == "length"
    # after the first token 8 remain: a run of 5 drafts (6 tokens), then room for 1 draft (2 tokens)
    assert [k for _, k in oracle.calls] == [5, 1]


def test_context_end_inside_a_run(model):
    engine = Engine(model, n_ctx=16)
    plain = engine.generate(PROMPT, max_tokens=50, sampling=GREEDY)
    assert plain.finish_reason == "context"
    gen = engine.generate(PROMPT, max_tokens=50, sampling=GREEDY,
                          speculation=Speculation(Oracle(PROMPT, plain.ids + [0] * 20), 8))
    assert gen.ids == plain.ids and gen.finish_reason == "context"


def test_eos_and_stop_strings_inside_an_accepted_run(model):
    engine = Engine(model, n_ctx=64)
    plain = engine.generate(PROMPT, max_tokens=20, sampling=GREEDY)
    ids = plain.ids
    # end-of-generation: the 6th generated token, proposed inside a run of 8
    eos = ids[5]
    first = ids.index(eos)
    a = engine.generate(PROMPT, max_tokens=20, sampling=GREEDY, eog_ids=[eos])
    b = engine.generate(PROMPT, max_tokens=20, sampling=GREEDY, eog_ids=[eos],
                        speculation=Speculation(Oracle(PROMPT, ids), 8))
    assert b.ids == a.ids == ids[:first] and b.finish_reason == a.finish_reason == "eos" and b.stop_token == eos
    # a stop string made of the 4th and 5th tokens' text, inside a run
    stop = f"<{ids[3]}><{ids[4]}>"
    pieces = []
    a = engine.generate(PROMPT, max_tokens=20, sampling=GREEDY, stop=[stop], decoder=Digits())
    b = engine.generate(PROMPT, max_tokens=20, sampling=GREEDY, stop=[stop], decoder=Digits(),
                        on_text=pieces.append, speculation=Speculation(Oracle(PROMPT, ids), 8))
    assert b.ids == a.ids and b.text == a.text == "".join(pieces) and b.finish_reason == "stop"
    assert stop not in b.text


# -- a draft model ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def other_llama(tmp_path_factory):
    """Another random llama of the same vocabulary size, one layer: a draft that is mostly wrong."""
    path = tmp_path_factory.mktemp("draft") / "draft.gguf"
    write_model(path, "llama", TinyConfig(n_layers=1, vocab_size=96, context_length=64, tied_output=False), seed=11)
    m = Model(path, backend="reference")
    yield m
    m.close()


@pytest.mark.parametrize("sampling", [GREEDY, SEEDED], ids=["greedy", "seeded"])
def test_a_draft_model_gives_the_plain_tokens(model, other_llama, sampling):
    engine = Engine(model, n_ctx=64)
    plain = engine.generate(PROMPT, max_tokens=30, sampling=sampling)
    same = DraftModel(Engine(model, n_ctx=64), model)  # the model as its own draft: greedy drafts all right
    gen = engine.generate(PROMPT, max_tokens=30, sampling=sampling, speculation=Speculation(same, 4))
    assert gen.ids == plain.ids
    if sampling is GREEDY:
        assert gen.stats.acceptance == 1.0
    other = DraftModel(Engine(other_llama, n_ctx=64), model)
    gen = engine.generate(PROMPT, max_tokens=30, sampling=sampling, speculation=Speculation(other, 4))
    assert gen.ids == plain.ids and gen.stats.draft_tokens > 0
    assert not other._slots and other.engine.cache.blocks_in_use() == 0  # released with the sequence


def test_a_draft_model_reads_only_what_it_has_not_seen(model):
    draft = DraftModel(Engine(model, n_ctx=64), model)
    steps = []
    real = draft.engine.step
    draft.engine.step = lambda tokens, *a, **k: steps.append(len(tokens)) or real(tokens, *a, **k)
    first = draft.propose([(7, PROMPT, 3)])[0]
    assert len(first) == 3 and steps == [len(PROMPT), 1, 1]
    steps.clear()
    # two drafts accepted, then the model's own token: the draft has seen PROMPT + first[:2] and reads one token
    context = PROMPT + first[:2] + [0]
    second = draft.propose([(7, context, 2)])[0]
    assert len(second) == 2 and steps == [1, 1]
    steps.clear()
    # all accepted and the model's next token: it reads the last draft (never fed) and that token
    assert len(draft.propose([(7, context + second + [1], 2)])[0]) == 2 and steps == [2, 1]
    draft.release(7)
    assert draft.engine.cache.blocks_in_use() == 0


def test_a_draft_of_another_vocabulary_is_refused(model, tmp_path):
    path = tmp_path / "small-vocab.gguf"
    write_model(path, "llama", TinyConfig(n_layers=1, vocab_size=64, context_length=64), seed=1)
    small = Model(path, backend="reference")
    try:
        with pytest.raises(RocmforgeError, match="another vocabulary .* a draft must share the model's tokenizer"):
            speculation_for(model, Engine(model, n_ctx=64), model_draft=path, load=lambda p: small)
    finally:
        small.close()
