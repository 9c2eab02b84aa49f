"""logprobs(logits, tokens, *, top) -> f32[n, 1 + 2 top]: per row, the log-probability of the sampled token and
the ``top`` most likely tokens with theirs, from the raw logits (log-softmax before any sampling transform:
penalties, bias, mask and temperature leave it unchanged, as OpenAI reports them).

logits f32[n, V]; tokens i32[n] (the ``sample`` op's result). Row r of the result: column 0 the log-probability
of tokens[r], columns 1..top the ids of the ``top`` largest logits (logit descending, then id ascending) as
floats (exact: the vocabulary is below 2^24), columns top+1..2 top their log-probabilities. The normalizer is
accumulated in double: log p(t) = x_t - (m + log sum_i exp(x_i - m)), m the row's largest logit. A step traces
this op only when some row asked for log-probabilities, so other steps neither compute nor read it."""

import numpy as np

from rocmforge_core.ops import ArgInfo, Case, OpSpec, Signature, Tolerance, Verdict, no, yes
from rocmforge_core.ops._cases import normal

TOP = 20  # OpenAI's largest top_logprobs; completions' logprobs (at most 5) read the first ones
MAX_VOCAB = 1 << 24  # ids are carried as f32


def supported(sig: Signature, backend: str) -> Verdict:
    """The op's own limits, which every kernel shares: f32 logits [rows, vocab], ids exact as f32, 0 < top <= V."""
    logits = sig.args[0]
    if logits.dtype != "f32" or len(logits.shape) != 2 or logits.shape[1] > MAX_VOCAB:
        return no(f"{backend} logprobs takes f32 logits [rows, vocab] with a vocabulary below {MAX_VOCAB}")
    if not 0 < sig.param("top", 0) <= logits.shape[1]:
        return no(f"{backend} logprobs needs 0 < top <= vocab")
    return yes()


def top_ids(row: np.ndarray, top: int) -> np.ndarray:
    """Ids of the ``top`` largest values, logit descending then id ascending."""
    order = np.lexsort((np.arange(len(row)), -row))
    return order[:top]


def reference(logits, tokens, *, top):
    logits = np.asarray(logits, dtype=np.float32)
    n, vocab = logits.shape
    out = np.empty((n, 1 + 2 * top), dtype=np.float32)
    for r in range(n):
        x = logits[r].astype(np.float64)
        m = x.max()
        lse = m + np.log(np.sum(np.exp(x - m)))
        ids = top_ids(logits[r], top)
        out[r, 0] = x[int(tokens[r])] - lse
        out[r, 1:1 + top] = ids
        out[r, 1 + top:] = x[ids] - lse
    return out


def split(row: np.ndarray, top: int = TOP) -> tuple[float, list[int], list[float]]:
    """One result row as (the sampled token's log-probability, top ids, their log-probabilities)."""
    return float(row[0]), [int(t) for t in row[1:1 + top]], [float(v) for v in row[1 + top:1 + 2 * top]]


def _cases(rng, formats):
    for n, vocab, top in ((1, 1000, TOP), (5, 3001, TOP), (3, 40, 5), (2, 20, 20)):
        logits = normal(rng, n, vocab, scale=3.0)
        logits[0, rng.integers(0, vocab, 4)] = logits[0].max()  # ties at the top go to the lower ids
        tokens = rng.integers(0, vocab, n).astype(np.int32)
        yield Case((logits, tokens), {"top": top}, label=f"{n} rows, vocab {vocab}, top {top}")


def _representative(fmt, layout):
    return Signature("logprobs", (ArgInfo((1, 32000), "f32"), ArgInfo((1,), "i32")), (("top", TOP),))


# Ids and log-probabilities share one array: a bound this tight fails any wrong id, while a last-bit difference
# of a log-probability (the normalizer summed in another order) stays far below it.
SPEC = OpSpec("logprobs", 1, __doc__, Tolerance(nmse=1e-12), _cases,
              out_shape=lambda args, params: ((args[0].shape[0], 1 + 2 * params["top"]), "f32"),
              work=lambda sig, formats: (4.0 * float(np.prod(sig.args[0].shape)), 4.0 * float(np.prod(sig.args[0].shape))),
              representative=_representative)
