"""sample(logits, history, *, ...) -> i32[1]: llama.cpp's sampler chain on one sequence's logits.

logits f32[V]; history i32[L], the sequence's last tokens for the penalties (may be empty).
Order as llama.cpp's default chain: penalties, top-k, typical, top-p, min-p, temperature, then a draw.
temperature <= 0 means greedy (argmax after penalties; ties go to the lowest id).
The draw is u = uniform(seed, step) in [0, 1) from a counter-based hash, so every backend draws the same u for
the same (seed, step), and picks the first candidate (logit descending, then id ascending) whose cumulative
probability exceeds u."""

import numpy as np

from rocmforge_core.ops import Case, OpSpec, Tolerance
from rocmforge_core.ops._cases import normal

DEFAULTS = dict(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, typical_p=1.0, repeat_penalty=1.0,
                presence_penalty=0.0, frequency_penalty=0.0, seed=0, step=0)
_MASK = (1 << 64) - 1


def uniform(seed: int, step: int) -> float:
    """splitmix64 of (seed, step), top 53 bits as a double in [0, 1)."""
    z = (int(seed) * 0x9E3779B97F4A7C15 + int(step) + 1) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    z ^= z >> 31
    return (z >> 11) * (1.0 / (1 << 53))


def apply_penalties(logits, history, repeat_penalty, presence_penalty, frequency_penalty):
    history = np.asarray(history, dtype=np.int64)
    history = history[history >= 0]
    if len(history) == 0 or (repeat_penalty == 1.0 and presence_penalty == 0.0 and frequency_penalty == 0.0):
        return logits
    logits = logits.copy()
    ids, counts = np.unique(history, return_counts=True)
    x = logits[ids]
    x = np.where(x <= 0, x * repeat_penalty, x / repeat_penalty)
    logits[ids] = x - counts * frequency_penalty - presence_penalty
    return logits


def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def reference(logits, history, *, temperature, top_k, top_p, min_p, typical_p, repeat_penalty,
              presence_penalty, frequency_penalty, seed, step):
    logits = apply_penalties(np.asarray(logits, dtype=np.float32), history, repeat_penalty,
                             presence_penalty, frequency_penalty)
    if temperature <= 0:
        return np.array([int(np.argmax(logits))], dtype=np.int32)
    order = np.lexsort((np.arange(len(logits)), -logits))  # logit descending, id ascending
    ids, x = order, logits[order].astype(np.float64)
    if top_k > 0:
        ids, x = ids[:top_k], x[:top_k]
    if typical_p < 1.0:
        p = _softmax(x)
        entropy = -np.sum(p * np.log(p + 1e-30))
        shifted = np.abs(-np.log(p + 1e-30) - entropy)
        o = np.argsort(shifted, kind="stable")
        keep = int(np.searchsorted(np.cumsum(p[o]), typical_p) + 1)
        keep_idx = np.sort(o[:max(keep, 1)])
        ids, x = ids[keep_idx], x[keep_idx]
    if top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(_softmax(x)), top_p) + 1)
        ids, x = ids[:max(keep, 1)], x[:max(keep, 1)]
    if min_p > 0.0:
        keep = x >= x[0] + np.log(min_p)
        ids, x = ids[keep], x[keep]
    p = _softmax(x / temperature)
    idx = int(np.searchsorted(np.cumsum(p), uniform(seed, step) * p.sum(), side="right"))
    return np.array([ids[min(idx, len(ids) - 1)]], dtype=np.int32)


def _cases(rng, formats):
    vocab = 1000
    for params in (dict(temperature=0.0), dict(), dict(top_k=5, top_p=0.9, min_p=0.0),
                   dict(temperature=1.5, top_k=0, top_p=1.0, min_p=0.1, seed=7, step=3),
                   dict(typical_p=0.9, repeat_penalty=1.3, presence_penalty=0.5, frequency_penalty=0.2, seed=3)):
        full = {**DEFAULTS, **params}
        logits = normal(rng, vocab, scale=3.0)
        history = rng.integers(0, vocab, 32).astype(np.int32)
        yield Case((logits, history), full, label=", ".join(f"{k}={v}" for k, v in params.items()) or "defaults")


SPEC = OpSpec("sample", 1, __doc__, Tolerance(exact=True), _cases)
