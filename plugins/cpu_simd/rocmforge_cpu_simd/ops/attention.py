"""attention over the paged KV cache: runs of at least attention_blas.MIN_RUN consecutive positions of one
sequence (prefill) as matrix products (attention_blas.py); the other rows (decode, small batches) in a loop
kernel where one parallel task per (token, kv head) covers the kv head's whole query group, so each cached key
and value row is read once per group, and scores go through a per-task scratch row."""

from __future__ import annotations

import numpy as np
from numba import prange

from rocmforge_core.ops import Kernel, no, yes
from rocmforge_cpu_simd import threads
from rocmforge_cpu_simd.jit import exp32, fast, serial_and_parallel
from rocmforge_cpu_simd.ops import attention_blas
from rocmforge_cpu_simd.ops.common import f32, output


@fast
def _write_cache(k, v, k_cache, v_cache, block_tables, seq_ids, positions):
    bs = k_cache.shape[1]
    for t in range(k.shape[0]):
        p = positions[t]
        blk = block_tables[seq_ids[t], p // bs]
        k_cache[blk, p % bs] = k[t]
        v_cache[blk, p % bs] = v[t]


def _attend(q, k_cache, v_cache, block_tables, seq_ids, positions, scale, window, softcap, out):
    m, hq, d = q.shape
    bs, hkv = k_cache.shape[1], k_cache.shape[2]
    dv = v_cache.shape[3]
    group = hq // hkv
    for task in prange(m * hkv):
        t = task // hkv
        g = task % hkv
        pos = positions[t]
        sid = seq_ids[t]
        start = max(0, pos - window + 1) if window > 0 else 0
        n = pos + 1 - start
        s = np.empty((group, n), dtype=np.float32)
        qg = q[t, g * group:(g + 1) * group]
        for j in range(n):
            p = start + j
            krow = k_cache[block_tables[sid, p // bs], p % bs, g]
            for r in range(group):
                qr = qg[r]
                acc = np.float32(0.0)
                for e in range(d):
                    acc += qr[e] * krow[e]
                s[r, j] = acc * scale
        if softcap > 0.0:
            for r in range(group):
                sr = s[r]
                for j in range(n):
                    sr[j] = softcap * np.tanh(sr[j] / softcap)
        # the weighted values add up in a scratch block, written to out once (not read and written per key)
        acc = np.zeros((group, dv), dtype=np.float32)
        for r in range(group):
            sr = s[r]
            mx = sr[0]
            for j in range(1, n):
                mx = max(mx, sr[j])
            total = np.float32(0.0)
            for j in range(n):
                e = exp32(sr[j] - mx)
                sr[j] = e
                total += e
            inv = np.float32(1.0) / total
            for j in range(n):
                sr[j] *= inv
        for j in range(n):
            p = start + j
            vrow = v_cache[block_tables[sid, p // bs], p % bs, g]
            for r in range(group):
                w = s[r, j]
                ar = acc[r]
                for c in range(dv):
                    ar[c] += w * vrow[c]
        for r in range(group):
            o = out[t, g * group + r]
            for c in range(dv):
                o[c] = acc[r, c]


# Decode steps have one task per kv head (often one): a parallel region would cost more than it spreads.
_ATTEND = serial_and_parallel(_attend, fast)


def attention(q, k, v, k_cache, v_cache, block_tables, seq_ids, positions, *, scale, window=0, softcap=0.0,
              out=None):
    q = f32(q)
    m, hq, _ = q.shape
    res = output(out, (m, hq, v_cache.shape[3]))
    _write_cache(f32(k), f32(v), k_cache, v_cache, block_tables, seq_ids, positions)
    scale, window, softcap = np.float32(scale), int(window), np.float32(softcap or 0.0)
    pieces = attention_blas.runs(seq_ids, positions) if m >= attention_blas.MIN_RUN else [(0, m)]
    short = [(a, b) for a, b in pieces if b - a < attention_blas.MIN_RUN]
    for a, b in pieces:
        if b - a >= attention_blas.MIN_RUN:
            attention_blas.attend_run(q, k_cache, v_cache, block_tables, seq_ids, positions, a, b, scale, window,
                                      softcap, res)
    if short == [(0, m)]:
        _attend_loop(q, k_cache, v_cache, block_tables, seq_ids, positions, scale, window, softcap, res)
    elif short:
        rows = np.concatenate([np.arange(a, b) for a, b in short])
        part = np.empty((len(rows),) + res.shape[1:], dtype=np.float32)
        _attend_loop(q[rows], k_cache, v_cache, block_tables, seq_ids[rows], positions[rows], scale, window,
                     softcap, part)
        res[rows] = part
    return res


def _attend_loop(q, k_cache, v_cache, block_tables, seq_ids, positions, scale, window, softcap, out) -> None:
    parallel = q.shape[0] * k_cache.shape[2] >= 2 * threads.threads()
    _ATTEND[parallel](q, k_cache, v_cache, block_tables, seq_ids, positions, scale, window, softcap, out)


def _supports(sig):
    q, k, v, kc, vc, tables, sids, pos = sig.args[:8]
    if q.shape[1] % kc.shape[2]:
        return no(f"{q.shape[1]} query heads are not a multiple of {kc.shape[2]} kv heads")
    for name, a in (("q", q), ("k", k), ("v", v), ("k_cache", kc), ("v_cache", vc)):
        if a.dtype != "f32":
            return no(f"{name} is {a.dtype}; the cpu attention takes f32 tensors and caches")
    for name, a in (("block_tables", tables), ("seq_ids", sids), ("positions", pos)):
        if a.dtype != "i32":
            return no(f"{name} is {a.dtype}, expected i32")
    return yes("paged attention, one task per (token, kv head)")


def kernels():
    return [Kernel("attention", "cpu", "cpu.attention", attention, _supports)]
