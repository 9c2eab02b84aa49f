"""sample(logits, history, params, controls, mask, bias_ids, bias_values, *, candidates) -> i32[n]: llama.cpp's
sampler chain, one draw per row.

logits f32[n, V]; history i32[n, L], each row's last tokens for the penalties, padded with -1 (ignored);
params f64[n, 7]: temperature, top_p, min_p, typical_p, repeat_penalty, presence_penalty, frequency_penalty;
controls i64[n, 3]: top_k, seed, step; mask i32[n, ceil(V/32)]: the allowed tokens, bit (t % 32) of word t // 32
(all ones: every token); bias_ids i64[n, K] and bias_values f32[n, K]: a sparse logit bias, id -1 unused, ids of a
row distinct. Rows are independent: each is sampled as if it were alone, whatever the batch and K.
Order: the bias is added (f32), tokens outside the mask get -inf, then llama.cpp's default chain: penalties,
top-k, typical, top-p, min-p, temperature, then a draw. Candidates at -inf after top-k are dropped (at least one
stays). temperature <= 0 means greedy (argmax after penalties; ties go to the lowest id).
The draw is u = uniform(seed, step) in [0, 1) from a counter-based hash, so every backend draws the same u for
the same (seed, step), and picks the first candidate (logit descending, then id ascending) whose cumulative
probability exceeds u. ``candidates`` bounds how many candidates any row keeps after top-k (1: every row is greedy;
V: some row is unbounded), so a kernel can say which calls it takes; it never changes the result."""

import numpy as np

from rocmforge_core.ops import ArgInfo, Case, OpSpec, Signature, Tolerance
from rocmforge_core.ops._cases import normal

DEFAULTS = dict(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, typical_p=1.0, repeat_penalty=1.0,
                presence_penalty=0.0, frequency_penalty=0.0, seed=0, step=0)
PARAMS = ("temperature", "top_p", "min_p", "typical_p", "repeat_penalty", "presence_penalty", "frequency_penalty")
CONTROLS = ("top_k", "seed", "step")
_MASK = (1 << 64) - 1


def uniform(seed: int, step: int) -> float:
    """splitmix64 of (seed, step), top 53 bits as a double in [0, 1)."""
    z = (int(seed) * 0x9E3779B97F4A7C15 + int(step) + 1) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    z ^= z >> 31
    return (z >> 11) * (1.0 / (1 << 53))


def pack(rows, history_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(history, params, controls) arrays of a call from one dict per row holding DEFAULTS' keys and
    ``history`` (a sequence of recent token ids). ``pack_constraints`` makes the mask and bias."""
    n = len(rows)
    hist = np.full((n, history_len), -1, dtype=np.int32)
    params = np.empty((n, len(PARAMS)), dtype=np.float64)
    controls = np.empty((n, len(CONTROLS)), dtype=np.int64)
    for r, row in enumerate(rows):
        recent = list(row.get("history", ()))[-history_len:] if history_len else []
        hist[r, :len(recent)] = recent
        params[r] = [row[k] for k in PARAMS]
        controls[r] = [row["top_k"], np.uint64(int(row["seed"]) & _MASK).astype(np.int64), row["step"]]
    return hist, params, controls


def mask_words(vocab: int) -> int:
    return -(-vocab // 32)


def pack_constraints(rows, vocab: int, bias_width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mask, bias_ids, bias_values) of a call from rows that may hold ``mask`` (i32[ceil(V/32)]) and ``bias``
    (a sequence of (id, value) pairs, at most ``bias_width``)."""
    n = len(rows)
    mask = np.full((n, mask_words(vocab)), -1, dtype=np.int32)
    ids = np.full((n, bias_width), -1, dtype=np.int64)
    values = np.zeros((n, bias_width), dtype=np.float32)
    for r, row in enumerate(rows):
        if row.get("mask") is not None:
            mask[r] = row["mask"]
        bias = list(row.get("bias", ()))
        if bias:
            ids[r, :len(bias)] = [t for t, _ in bias]
            values[r, :len(bias)] = [v for _, v in bias]
    return mask, ids, values


def bias_width(rows) -> int:
    """The K of a call: 1 when no row has a bias, else a power of two of at least 16 holding the longest."""
    longest = max((len(row.get("bias", ())) for row in rows), default=0)
    return 1 if longest == 0 else max(16, 1 << (longest - 1).bit_length())


def allowed(mask_row, vocab: int) -> np.ndarray:
    """Booleans [V] of a mask row."""
    bits = np.unpackbits(np.ascontiguousarray(mask_row, dtype="<i4").view(np.uint8), bitorder="little")
    return bits[:vocab].astype(bool)


def constrain(logits, mask_row, bias_ids, bias_values) -> np.ndarray:
    """One row's logits with the bias added and the tokens outside the mask at -inf (a copy when either acts)."""
    logits = np.asarray(logits, dtype=np.float32)
    used = np.asarray(bias_ids) >= 0
    if used.any():
        logits = logits.copy()
        np.add.at(logits, np.asarray(bias_ids)[used], np.asarray(bias_values, dtype=np.float32)[used])
    if (np.asarray(mask_row) != -1).any():
        logits = np.where(allowed(mask_row, len(logits)), logits, np.float32(-np.inf)).astype(np.float32)
    return logits


def candidates(rows, vocab: int) -> int:
    """The ``candidates`` bound of a call: 1 when every row is greedy, else the largest top-k rounded up to a power
    of two (so a handful of bounds cover every request), or the vocabulary when a row keeps every token."""
    sampled = [row["top_k"] for row in rows if row["temperature"] > 0]
    if not sampled:
        return 1
    if min(sampled) <= 0 or max(sampled) >= vocab:
        return vocab
    return min(vocab, 1 << (max(sampled) - 1).bit_length())


def apply_penalties(logits, history, repeat_penalty, presence_penalty, frequency_penalty):
    history = np.asarray(history, dtype=np.int64)
    history = history[history >= 0]
    if len(history) == 0 or (repeat_penalty == 1.0 and presence_penalty == 0.0 and frequency_penalty == 0.0):
        return logits
    logits = logits.copy()
    ids, counts = np.unique(history, return_counts=True)
    x = logits[ids]
    x = np.where(x <= 0, x * np.float32(repeat_penalty), x / np.float32(repeat_penalty))
    logits[ids] = x - counts * frequency_penalty - presence_penalty
    return logits


def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def sample_row(logits, history, *, temperature, top_k, top_p, min_p, typical_p, repeat_penalty,
               presence_penalty, frequency_penalty, seed, step):
    """One row's token id (an int)."""
    logits = apply_penalties(np.asarray(logits, dtype=np.float32), history, repeat_penalty,
                             presence_penalty, frequency_penalty)
    if temperature <= 0:
        return int(np.argmax(logits))
    order = np.lexsort((np.arange(len(logits)), -logits))  # logit descending, id ascending
    ids, x = order, logits[order].astype(np.float64)
    if top_k > 0:
        ids, x = ids[:top_k], x[:top_k]
    finite = max(1, int(np.count_nonzero(x > -np.inf)))  # masked tokens sort last
    ids, x = ids[:finite], x[:finite]
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
    return int(ids[min(idx, len(ids) - 1)])


def row_params(params, controls, r: int) -> dict:
    """Row r of a call's params and controls as sample_row's keyword arguments."""
    out = {k: float(params[r, i]) for i, k in enumerate(PARAMS)}
    out.update(top_k=int(controls[r, 0]), seed=int(controls[r, 1]) & _MASK, step=int(controls[r, 2]))
    return out


def reference(logits, history, params, controls, mask, bias_ids, bias_values, *, candidates):
    logits = np.asarray(logits, dtype=np.float32)
    return np.array([sample_row(constrain(logits[r], mask[r], bias_ids[r], bias_values[r]), history[r],
                                **row_params(params, controls, r))
                     for r in range(logits.shape[0])], dtype=np.int32)


def _cases(rng, formats):
    vocab = 1000
    settings = (dict(temperature=0.0), dict(), dict(top_k=5, top_p=0.9, min_p=0.0),
                dict(temperature=1.5, top_k=0, top_p=1.0, min_p=0.1, seed=7, step=3),
                dict(typical_p=0.9, repeat_penalty=1.3, presence_penalty=0.5, frequency_penalty=0.2, seed=3),
                dict(temperature=0.0, repeat_penalty=1.5, seed=11))
    for params in settings:  # one row of each setting alone
        row = {**DEFAULTS, **params, "history": rng.integers(0, vocab, 32).tolist()}
        yield _case(rng, [row], vocab, ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults")
    # A batch mixing them: greedy and sampled rows, short and empty histories, other seeds and steps.
    rows = [{**DEFAULTS, **params, "seed": 100 + i, "step": i * 7, "history": rng.integers(0, vocab, 4 * i).tolist()}
            for i, params in enumerate(settings)]
    yield _case(rng, rows, vocab, "mixed rows")
    greedy = [{**DEFAULTS, "temperature": 0.0, "history": []} for _ in range(9)]
    yield _case(rng, greedy, vocab, "greedy batch")
    # Constrained rows: a mask keeping few tokens (fewer than top-k), a bias that forces or bans, both, neither.
    vocab = 1003  # a last mask word only partly used
    keep = np.zeros(vocab, dtype=bool)
    keep[rng.choice(vocab, 7, replace=False)] = True
    few = np.packbits(np.concatenate([keep, np.zeros(32 * mask_words(vocab) - vocab, bool)]),
                      bitorder="little").view("<i4")
    ban = [(int(t), -100.0) for t in rng.choice(vocab, 20, replace=False)]
    force = [(int(rng.integers(vocab)), 30.0), (int(rng.integers(vocab)), 2.5)]
    constrained = [dict(mask=few), dict(mask=few, temperature=0.0), dict(bias=ban), dict(bias=force, temperature=0.0),
                   dict(mask=few, bias=force, top_k=0, top_p=1.0, min_p=0.0, seed=5), dict(),
                   dict(mask=few, typical_p=0.8, repeat_penalty=1.2, seed=9)]
    rows = [{**DEFAULTS, "seed": 50 + i, "step": i, "history": rng.integers(0, vocab, 8).tolist(), **c}
            for i, c in enumerate(constrained)]
    for r, row in enumerate(rows):
        yield _case(rng, [row], vocab, f"constrained row {r}")
    yield _case(rng, rows, vocab, "constrained batch")


def _case(rng, rows, vocab, label):
    hist, params, controls = pack(rows, 32)
    logits = normal(rng, len(rows), vocab, scale=3.0)
    constraints = pack_constraints(rows, vocab, bias_width(rows))
    return Case((logits, hist, params, controls, *constraints), {"candidates": candidates(rows, vocab)}, label=label)


def _representative(fmt, layout):
    args = (ArgInfo((1, 32000), "f32"), ArgInfo((1, 64), "i32"), ArgInfo((1, len(PARAMS)), "f64"),
            ArgInfo((1, len(CONTROLS)), "i64"), ArgInfo((1, mask_words(32000)), "i32"), ArgInfo((1, 1), "i64"),
            ArgInfo((1, 1), "f32"))
    return Signature("sample", args, (("candidates", 64),))


SPEC = OpSpec("sample", 3, __doc__, Tolerance(exact=True), _cases,
              out_shape=lambda args, params: ((args[0].shape[0],), "i32"),
              work=lambda sig, formats: (10.0 * float(np.prod(sig.args[0].shape)), 4.0 * float(np.prod(sig.args[0].shape))),
              representative=_representative)
