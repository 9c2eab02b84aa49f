"""attention over a paged KV cache, causal, with GQA/MQA and an optional sliding window.

attention(q, k, v, k_cache, v_cache, block_tables, seq_ids, positions, *, scale, window=0, softcap=0.0)
  q f32[m, Hq, D]; k f32[m, Hkv, D]; v f32[m, Hkv, Dv]   this batch's tokens (any mix of sequences)
  k_cache [NB, BS, Hkv, D], v_cache [NB, BS, Hkv, Dv]     one layer's cache: NB blocks of BS token slots
  block_tables i32[S, MB]                                  block ids of each sequence, in position order
  seq_ids i32[m], positions i32[m]                         which sequence and position each token is
-> f32[m, Hq, Dv]

First writes each token's k and v into its slot (block_tables[seq][pos // BS], pos % BS) of the caches, in
place. Then token t attends to every cached position p' of its sequence with p' <= positions[t] and, when
window > 0, positions[t] - p' < window (ggml's standard sliding window). Query head h reads kv head
h // (Hq / Hkv). Scores are scale * q.k, optionally softcap * tanh(score / softcap), then softmax."""

import numpy as np

from rocmforge_core.ops import Case, OpSpec, Tolerance, itemsize
from rocmforge_core.ops._cases import call, f32, i32, normal

NOMINAL_CONTEXT = 512  # cached positions a cost estimate assumes (a traced step has no real context length)


def write_cache(k, v, k_cache, v_cache, block_tables, seq_ids, positions):
    bs = k_cache.shape[1]
    blocks = block_tables[seq_ids, positions // bs]
    k_cache[blocks, positions % bs] = k
    v_cache[blocks, positions % bs] = v


def reference(q, k, v, k_cache, v_cache, block_tables, seq_ids, positions, *, scale, window=0, softcap=0.0):
    seq_ids = np.asarray(seq_ids, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.int64)
    write_cache(k, v, k_cache, v_cache, block_tables, seq_ids, positions)
    m, hq, _ = q.shape
    bs, hkv, dv = k_cache.shape[1], k_cache.shape[2], v_cache.shape[3]
    group = hq // hkv
    out = np.empty((m, hq, dv), dtype=np.float32)
    for t in range(m):
        pos = positions[t]
        keys = np.arange(pos + 1)
        if window > 0:
            keys = keys[pos - keys < window]
        blocks = block_tables[seq_ids[t], keys // bs]
        kk = k_cache[blocks, keys % bs].astype(np.float32)  # [n, Hkv, D]
        vv = v_cache[blocks, keys % bs].astype(np.float32)
        kk = np.repeat(kk, group, axis=1)
        vv = np.repeat(vv, group, axis=1)
        s = np.einsum("hd,nhd->hn", q[t].astype(np.float64), kk.astype(np.float64)) * scale
        if softcap:
            s = softcap * np.tanh(s / softcap)
        s = np.exp(s - s.max(axis=1, keepdims=True))
        p = s / s.sum(axis=1, keepdims=True)
        out[t] = np.einsum("hn,nhd->hd", p, vv.astype(np.float64))
    return out


def _case(rng, *, seqs, hq, hkv, d, bs, window, label):
    """seqs: list of (cached_len, new_tokens). Earlier positions are pre-filled in the cache."""
    mb = max((c + n + bs - 1) // bs for c, n in seqs)
    nb = mb * len(seqs) + 1
    k_cache = normal(rng, nb, bs, hkv, d)
    v_cache = normal(rng, nb, bs, hkv, d)
    perm = rng.permutation(nb - 1)[: mb * len(seqs)] + 1  # block 0 never used: catches wrong indexing
    tables = perm.reshape(len(seqs), mb).astype(np.int32)
    sid = np.concatenate([np.full(n, i) for i, (c, n) in enumerate(seqs)]).astype(np.int32)
    pos = np.concatenate([np.arange(c, c + n) for c, n in seqs]).astype(np.int32)
    m = len(pos)
    args = (normal(rng, m, hq, d), normal(rng, m, hkv, d), normal(rng, m, hkv, d), k_cache, v_cache, tables, sid, pos)
    return Case(args, {"scale": 1.0 / np.sqrt(d), "window": window}, label=label)


def _cases(rng, formats):
    yield _case(rng, seqs=[(0, 17)], hq=4, hkv=4, d=64, bs=16, window=0, label="prefill MHA")
    yield _case(rng, seqs=[(40, 1)], hq=8, hkv=2, d=64, bs=16, window=0, label="decode GQA")
    yield _case(rng, seqs=[(0, 33)], hq=4, hkv=1, d=128, bs=16, window=8, label="prefill MQA window")
    yield _case(rng, seqs=[(70, 1), (3, 5), (0, 1)], hq=6, hkv=2, d=64, bs=16, window=0, label="mixed batch")
    yield _case(rng, seqs=[(600, 1)], hq=4, hkv=1, d=256, bs=32, window=512, label="long decode window")
    # 14 query heads per kv head: more than a hip wave takes (8), so two waves share a kv head, the second with 6
    yield _case(rng, seqs=[(90, 1), (20, 3)], hq=28, hkv=2, d=128, bs=16, window=0, label="wide GQA groups")


def _work(sig, formats):
    """Scores and weighted sums over NOMINAL_CONTEXT positions; the caches are read up to that context, not
    their capacity."""
    m, hq, d = sig.args[0].shape
    nbytes = 0.0
    for i, a in enumerate(sig.args):
        rows = NOMINAL_CONTEXT if i in SPEC.state else 1
        nbytes += rows * float(np.prod(a.shape[2:] if i in SPEC.state else a.shape)) * itemsize(a.dtype, formats)
    return 4.0 * m * hq * d * NOMINAL_CONTEXT, nbytes


def _representative(fmt, layout):
    return call("attention", (f32(1, 32, 128), f32(1, 8, 128), f32(1, 8, 128), f32(64, 16, 8, 128),
                              f32(64, 16, 8, 128), i32(1, 64), i32(1), i32(1)),
                scale=128 ** -0.5, window=0, softcap=0.0)


SPEC = OpSpec("attention", 1, __doc__, Tolerance(nmse=1e-7), _cases, state=(3, 4), work=_work,
              out_shape=lambda args, params: ((args[0].shape[0], args[0].shape[1], args[2].shape[2]), "f32"),
              representative=_representative)
