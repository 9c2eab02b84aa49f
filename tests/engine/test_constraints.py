"""The sample op's mask and bias and the logprobs op through Engine.step on the cpu backend: constrained rows keep
to their mask, each row samples as it would alone whatever the others ask, log-probabilities are the raw logits'."""

from __future__ import annotations

import numpy as np
import pytest

from rocmforge_core.engine import Engine, Model, RowSampling, SamplingParams
from rocmforge_core.ops.sample import mask_words

HOT = SamplingParams(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=4)


@pytest.fixture(scope="module")
def engine(tiny_llama):
    m = Model(tiny_llama, backend="cpu")
    yield Engine(m, n_ctx=32, max_seqs=3)
    m.close()


def mask_of(vocab: int, ids) -> np.ndarray:
    keep = np.zeros(32 * mask_words(vocab), dtype=bool)
    keep[list(ids)] = True
    return np.packbits(keep, bitorder="little").view("<i4").astype(np.int32)


def step(engine, sampling):
    n = len(sampling)
    slots = [engine.add_sequence() for _ in range(n)]
    try:
        return engine.step([3] * n, slots, [0] * n, range(n), "decode", sampling)
    finally:
        for s in slots:
            engine.free_sequence(s)


def test_masked_rows_draw_only_allowed_tokens(engine):
    vocab = engine.model.config.vocab_size
    allowed = {5, 17, 60}
    for step_no in range(12):
        row = RowSampling(HOT, step_no, mask=mask_of(vocab, allowed))
        assert step(engine, [row]).tokens[0] in allowed


def test_each_row_samples_as_alone_whatever_the_others_constrain(engine):
    vocab = engine.model.config.vocab_size
    plain = RowSampling(HOT, 2)
    others = [RowSampling(HOT, 1, bias=[(t, -100.0) for t in range(40)]),  # a wider bias (another K)
              RowSampling(HOT, 3, mask=mask_of(vocab, {1, 2})), RowSampling(HOT, 5, logprobs=True)]
    alone = step(engine, [plain]).tokens[0]
    for other in others:
        assert step(engine, [other, plain]).tokens[1] == alone
    forced = RowSampling(HOT, 0, bias=[(9, 100.0)])
    assert step(engine, [forced, plain]).tokens == [9, alone]


def test_logprobs_are_the_raw_logits_log_softmax_and_only_read_when_asked(engine):
    result = step(engine, [RowSampling(HOT, 0, bias=[(9, 100.0)], logprobs=True), RowSampling()])
    logits = engine.logits_to_host(result.logits).astype(np.float64)
    want = logits - (logits.max(1, keepdims=True) + np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1,
                                                                                                       keepdims=True)))
    lp = result.logprobs
    assert result.tokens[0] == 9
    np.testing.assert_allclose(lp[:, 0], want[[0, 1], result.tokens], rtol=1e-5)  # the bias does not count
    top = lp[:, 1:21].astype(int)
    np.testing.assert_array_equal(top, np.argsort(-logits, axis=1, kind="stable")[:, :20])
    np.testing.assert_allclose(lp[:, 21:41], np.take_along_axis(want, top, 1), rtol=1e-5)
    assert step(engine, [RowSampling(HOT, 0)]).logprobs is None
