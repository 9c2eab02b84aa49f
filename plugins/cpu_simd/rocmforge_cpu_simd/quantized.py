"""Kernels on quantized weights, in the two layouts that format plugins repack their blocks into for the cpu.

At load time a format's cpu repacker (its package's cpu.py) splits GGUF blocks into separate contiguous arrays,
so that the inner loops stream one kind of data each and vectorise (16 float32 lanes with AVX-512):

  "cpu.q4"  4-bit values: ``nibbles`` u8[n, k/2] (per 32 weights, 16 bytes: low nibbles are weights 0-15, high
            nibbles 16-31, as Q4_0), ``scale`` f32[n, k/32], ``minv`` f32[n, k/32]; w = scale * q + minv, or
            scale * (q - offset) when ``offset`` is set (Q4_0; its ``minv`` is then -offset * scale).
            Q4_0, Q4_1 and Q4_K (its 6-bit sub-block scales and mins multiplied out in float32, as ggml does).
  "cpu.i8"  values widened to one signed byte: ``values`` i8[n, k], ``scale`` f32[n, k/bs] with bs 32 or 16,
            ``minv`` f32[n, k/bs] or f32[n, 0]; w = scale * v (+ minv). Q8_0, Q5_0, Q5_1, Q5_K and Q6_K (bs 16).
            5- and 6-bit values cost a byte here instead of 5.5-6.6 bits: the unpacking leaves the inner loop.

Scales are float32 (widened once at load): keeping GGUF's fp16 bits and widening them in the loops (F16C) saved
the bytes but cost more than it saved (gemma-3-270m's decode matmuls 28.5 -> 35 ms on one core).

Every value is the exact product ggml's dequantizer computes, so dequantizing a repacked weight is bit-exact.

The products: each weight row's 32 (or 16) values share a scale, so a row's dot product with an activation row x
is sum_b scale_b * sum_j q_j x_j + sum_b minv_b * sum_j x_j. ggml quantizes x to 8 bits to run the inner sum on
integer SIMD (pmaddubsw); numba types every integer product as int64, which halves or quarters the SIMD width,
so here the inner sum converts q to float32 and multiplies by x in float32 (16 lanes per instruction, and more
accurate than 8-bit activations). Decode (one row of x) takes two weight rows per pass; small batches convert
each weight once for up to four rows of x; from BLAS_MIN_ROWS tokens on, tiles of weight rows are dequantized
once (exactly) and multiplied through BLAS sgemm, which reuses each weight across the whole batch. Rows are
prefetched PREFETCH_ROWS ahead: the loops are short and a core otherwise waits on each row's first lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import prange

from rocmforge_core.formats import Weight
from rocmforge_core.ops import Kernel, no, yes
from rocmforge_cpu_simd import threads
from rocmforge_cpu_simd.gemm import tiled_sgemm
from rocmforge_cpu_simd.jit import PREFETCH_ROWS, exact, fast, prefetch_row, serial_and_parallel
from rocmforge_cpu_simd.ops.common import f32, output

Q4, I8 = "cpu.q4", "cpu.i8"
BLAS_MIN_ROWS = 32      # from this many tokens on, dequantized tiles + sgemm beat the simd kernels (docs/CPU.md)


@dataclass(frozen=True)
class Q4Blocks:
    nibbles: np.ndarray  # u8[n, k/2]
    scale: np.ndarray    # f32[n, k/32]
    minv: np.ndarray     # f32[n, k/32]
    offset: int = 0

    @property
    def nbytes(self) -> int:
        return self.nibbles.nbytes + self.scale.nbytes + self.minv.nbytes


@dataclass(frozen=True)
class I8Blocks:
    values: np.ndarray   # i8[n, k]
    scale: np.ndarray    # f32[n, k/bs]
    minv: np.ndarray     # f32[n, k/bs] or f32[n, 0]

    @property
    def block(self) -> int:
        return self.values.shape[1] // self.scale.shape[1]

    @property
    def nbytes(self) -> int:
        return self.values.nbytes + self.scale.nbytes + self.minv.nbytes


def pack_nibbles(q: np.ndarray) -> np.ndarray:
    """u8 values 0..15 [n, k] -> u8[n, k/2] in Q4_0 order (per 32: low nibbles 0-15, high nibbles 16-31)."""
    q = q.reshape(q.shape[0], -1, 2, 16)
    return (q[:, :, 0] | (q[:, :, 1] << np.uint8(4))).reshape(q.shape[0], -1)


def _per_row(a: np.ndarray, n: int) -> np.ndarray:
    return np.ascontiguousarray(a.reshape(n, -1), dtype=np.float32)


def q4_weight(weight: Weight, scale, minv, nibbles, offset: int = 0) -> Weight:
    n = weight.shape[0]
    return weight.with_data(Q4Blocks(np.ascontiguousarray(nibbles.reshape(n, -1)), _per_row(scale, n),
                                     _per_row(minv, n), offset), Q4)


def i8_weight(weight: Weight, scale, values, minv=None) -> Weight:
    n = weight.shape[0]
    minv = np.zeros((n, 0), np.float32) if minv is None else _per_row(minv, n)
    return weight.with_data(I8Blocks(np.ascontiguousarray(values.reshape(n, -1).astype(np.int8, copy=False)),
                                     _per_row(scale, n), minv), I8)


def blocks_of(weight: Weight, type_size: int) -> np.ndarray:
    """The raw GGUF blocks of a 2-D weight as u8[n * blocks_per_row, type_size]."""
    return np.ascontiguousarray(np.asarray(weight.data)).reshape(-1, type_size)


# -- products ------------------------------------------------------------------------------------------------
@fast(inline="always")
def _add_min_terms(minv, xsum, r, out):
    """out[:, r] += sum_b minv[r, b] * sum(x over block b), the blocks' offsets (no-op without minimums)."""
    for t in range(out.shape[0]):
        acc = np.float32(0.0)
        for b in range(minv.shape[1]):
            acc += minv[r, b] * xsum[t, b]
        out[t, r] += acc


# The row helpers take 1-D rows so that LLVM sees unit-stride streams (16-lane loads, converts and FMAs); the
# four-token variants convert each weight once for four activation rows.
@fast(inline="always")
def _i8_one(v, sc, x, shift):
    acc = np.float32(0.0)
    for j in range(v.shape[0]):
        acc += np.float32(v[j]) * sc[j >> shift] * x[j]
    return acc


@fast(inline="always")
def _i8_two_rows(v0, v1, sc0, sc1, x, shift):
    a0 = a1 = np.float32(0.0)
    for j in range(v0.shape[0]):
        a0 += np.float32(v0[j]) * sc0[j >> shift] * x[j]
        a1 += np.float32(v1[j]) * sc1[j >> shift] * x[j]
    return a0, a1


@fast(inline="always")
def _i8_four(v, sc, x0, x1, x2, x3, shift):
    a0 = a1 = a2 = a3 = np.float32(0.0)
    for j in range(v.shape[0]):
        w = np.float32(v[j]) * sc[j >> shift]
        a0 += w * x0[j]
        a1 += w * x1[j]
        a2 += w * x2[j]
        a3 += w * x3[j]
    return a0, a1, a2, a3


def _i8_rows(shift: int):
    # The closure holds only the constant shift (numba's cache key hashes closure cells, so it is stable across
    # processes); the helpers are inlined, so LLVM sees the shift and loads each block's scale once per vector.
    def dot(values, scale, minv, x, out):
        n, k = values.shape
        m = x.shape[0]
        xsum = np.zeros((m, minv.shape[1]), dtype=np.float32)
        for t in range(m):
            for j in range(k if minv.shape[1] else 0):
                xsum[t, j >> shift] += x[t, j]
        if m == 1:  # decode: two rows per pass share the loads of x and the loop overhead
            for p in prange((n + 1) // 2):
                r = 2 * p
                for ahead in range(r + PREFETCH_ROWS, r + PREFETCH_ROWS + 2):
                    prefetch_row(values, ahead)
                    prefetch_row(scale, ahead)
                    prefetch_row(minv, ahead)
                if r + 1 < n:
                    out[0, r], out[0, r + 1] = _i8_two_rows(values[r], values[r + 1], scale[r], scale[r + 1], x[0],
                                                            shift)
                else:
                    out[0, r] = _i8_one(values[r], scale[r], x[0], shift)
                for i in range(r, min(r + 2, n)):
                    _add_min_terms(minv, xsum, i, out)
        else:
            for r in prange(n):
                prefetch_row(values, r + PREFETCH_ROWS)
                prefetch_row(scale, r + PREFETCH_ROWS)
                prefetch_row(minv, r + PREFETCH_ROWS)
                v, sc = values[r], scale[r]
                t = 0
                while t + 4 <= m:
                    out[t, r], out[t + 1, r], out[t + 2, r], out[t + 3, r] = _i8_four(v, sc, x[t], x[t + 1],
                                                                                      x[t + 2], x[t + 3], shift)
                    t += 4
                while t < m:
                    out[t, r] = _i8_one(v, sc, x[t], shift)
                    t += 1
                _add_min_terms(minv, xsum, r, out)
    return dot


_I8_DOT = {bs: serial_and_parallel(_i8_rows(shift), fast) for bs, shift in ((16, 4), (32, 5))}


@fast(inline="always")
def _q4_one(nib, sc, lo, hi):
    acc = np.float32(0.0)
    for i in range(nib.shape[0]):
        q = nib[i]
        s = sc[i >> 4]
        acc += np.float32(np.uint8(q & np.uint8(15))) * s * lo[i] + np.float32(np.uint8(q >> np.uint8(4))) * s * hi[i]
    return acc


@fast(inline="always")
def _q4_two_rows(nib0, nib1, sc0, sc1, lo, hi):
    a0 = a1 = np.float32(0.0)
    for i in range(nib0.shape[0]):
        q0 = nib0[i]
        q1 = nib1[i]
        s0 = sc0[i >> 4]
        s1 = sc1[i >> 4]
        a0 += (np.float32(np.uint8(q0 & np.uint8(15))) * lo[i] + np.float32(np.uint8(q0 >> np.uint8(4))) * hi[i]) * s0
        a1 += (np.float32(np.uint8(q1 & np.uint8(15))) * lo[i] + np.float32(np.uint8(q1 >> np.uint8(4))) * hi[i]) * s1
    return a0, a1


@fast(inline="always")
def _q4_four(nib, sc, lo0, hi0, lo1, hi1, lo2, hi2, lo3, hi3):
    a0 = a1 = a2 = a3 = np.float32(0.0)
    for i in range(nib.shape[0]):
        q = nib[i]
        s = sc[i >> 4]
        wl = np.float32(np.uint8(q & np.uint8(15))) * s
        wh = np.float32(np.uint8(q >> np.uint8(4))) * s
        a0 += wl * lo0[i] + wh * hi0[i]
        a1 += wl * lo1[i] + wh * hi1[i]
        a2 += wl * lo2[i] + wh * hi2[i]
        a3 += wl * lo3[i] + wh * hi3[i]
    return a0, a1, a2, a3


def _q4_dot_rows(nibbles, scale, minv, x, out):
    n, h = nibbles.shape
    m = x.shape[0]
    nb = scale.shape[1]
    # x reordered like the nibbles: lo[i] multiplies byte i's low nibble, hi[i] its high nibble.
    lo = np.empty((m, h), dtype=np.float32)
    hi = np.empty((m, h), dtype=np.float32)
    xsum = np.zeros((m, nb), dtype=np.float32)
    for t in range(m):
        for i in range(h):
            b = i >> 4
            lo[t, i] = x[t, b * 32 + (i & 15)]
            hi[t, i] = x[t, b * 32 + 16 + (i & 15)]
            xsum[t, b] += lo[t, i] + hi[t, i]
    if m == 1:  # decode: two rows per pass share the loads of x and the loop overhead
        for p in prange((n + 1) // 2):
            r = 2 * p
            for ahead in range(r + PREFETCH_ROWS, r + PREFETCH_ROWS + 2):
                prefetch_row(nibbles, ahead)
                prefetch_row(scale, ahead)
                prefetch_row(minv, ahead)
            if r + 1 < n:
                out[0, r], out[0, r + 1] = _q4_two_rows(nibbles[r], nibbles[r + 1], scale[r], scale[r + 1], lo[0],
                                                        hi[0])
            else:
                out[0, r] = _q4_one(nibbles[r], scale[r], lo[0], hi[0])
            for i in range(r, min(r + 2, n)):
                _add_min_terms(minv, xsum, i, out)
    else:
        for r in prange(n):
            prefetch_row(nibbles, r + PREFETCH_ROWS)
            prefetch_row(scale, r + PREFETCH_ROWS)
            prefetch_row(minv, r + PREFETCH_ROWS)
            nib, sc = nibbles[r], scale[r]
            t = 0
            while t + 4 <= m:
                out[t, r], out[t + 1, r], out[t + 2, r], out[t + 3, r] = _q4_four(
                    nib, sc, lo[t], hi[t], lo[t + 1], hi[t + 1], lo[t + 2], hi[t + 2], lo[t + 3], hi[t + 3])
                t += 4
            while t < m:
                out[t, r] = _q4_one(nib, sc, lo[t], hi[t])
                t += 1
            _add_min_terms(minv, xsum, r, out)


_Q4_DOT = serial_and_parallel(_q4_dot_rows, fast)


# -- exact dequantization of rows ----------------------------------------------------------------------------
def _i8_dequant(shift: int):
    def dequant(values, scale, minv, ids, out):
        k = values.shape[1]
        has_min = minv.shape[1] > 0
        for i in prange(ids.shape[0]):
            r = ids[i]
            for j in range(k):
                w = scale[r, j >> shift] * np.float32(values[r, j])
                if has_min:
                    w = w + minv[r, j >> shift]
                out[i, j] = w
    return dequant


# Parallel for whole tensors and embedding rows; serial inside the sgemm tiles, which are already one per thread.
_I8_DEQUANT = {(bs, parallel): build for bs, shift in ((16, 4), (32, 5))
               for parallel, build in serial_and_parallel(_i8_dequant(shift), exact).items()}


def _q4_dequant_rows(nibbles, scale, minv, offset, ids, out):
    h = nibbles.shape[1]
    for i in prange(ids.shape[0]):
        r = ids[i]
        for c in range(h):
            b = c >> 4
            q = nibbles[r, c]
            for half in range(2):
                v = np.int32((q >> (4 * half)) & 15)
                if offset:
                    w = scale[r, b] * np.float32(v - offset)
                else:
                    w = scale[r, b] * np.float32(v) + minv[r, b]
                out[i, b * 32 + 16 * half + (c & 15)] = w


_Q4_DEQUANT = serial_and_parallel(_q4_dequant_rows, exact)


def dequantize_rows(data, ids: np.ndarray, out: np.ndarray, parallel: bool = True) -> np.ndarray:
    if isinstance(data, Q4Blocks):
        _Q4_DEQUANT[parallel](data.nibbles, data.scale, data.minv, data.offset, ids, out)
    else:
        _I8_DEQUANT[data.block, parallel](data.values, data.scale, data.minv, ids, out)
    return out


# -- op entry points -----------------------------------------------------------------------------------------
def matmul(x, w, *, out=None):
    x = f32(x)
    m = x.shape[0]
    n, k = w.shape
    res = output(out, (m, n))
    data = w.data
    if m >= BLAS_MIN_ROWS:
        return tiled_sgemm(x, n, lambda r0, r1, buf: dequantize_rows(data, np.arange(r0, r1), buf, False), res)
    if isinstance(data, Q4Blocks):
        threads.run(_Q4_DOT, m * n * k, data.nibbles, data.scale, data.minv, x, res)
    else:
        threads.run(_I8_DOT[data.block], m * n * k, data.values, data.scale, data.minv, x, res)
    return res


def dequant(w, *, out=None):
    res = output(out, tuple(w.shape))
    return dequantize_rows(w.data, np.arange(w.shape[0]), res)


def embedding(table, ids, *, out=None):
    ids = np.asarray(ids, dtype=np.int64)
    k = table.shape[-1]
    return dequantize_rows(table.data, ids, output(out, (len(ids), k)), threads.worth_parallel(len(ids) * k))


def kernels(fmt: str, layout: str) -> list[Kernel]:
    """matmul, dequant and embedding kernels of format ``fmt`` repacked into ``layout`` (registered by the
    format's cpu.py, which also provides the repacker)."""

    def weight_ok(info, what: str):
        if info.dtype != fmt or info.layout != layout:
            return no(f"takes {fmt} weights repacked as {layout!r}, got {info.dtype} layout {info.layout!r}")
        return yes(what)

    def matmul_ok(sig):
        x, w = sig.args
        if x.dtype != "f32" or len(x.shape) != 2 or len(w.shape) != 2 or x.shape[1] != w.shape[1]:
            return no(f"matmul needs x f32[m, k] and w [n, k], got {x.dtype}{list(x.shape)} and {list(w.shape)}")
        return weight_ok(w, f"{fmt} blocks: float32 SIMD dot products on {layout} (m < {BLAS_MIN_ROWS}), "
                            f"dequantized tiles + BLAS sgemm for larger batches")

    name = f"cpu.{fmt.lower()}"
    return [Kernel("matmul", "cpu", f"{name}.matmul", matmul, matmul_ok),
            Kernel("dequant", "cpu", f"{name}.dequant", dequant, lambda sig: weight_ok(sig.args[0], "exact")),
            Kernel("embedding", "cpu", f"{name}.embedding", embedding,
                   lambda sig: weight_ok(sig.args[0], "dequantize the rows asked for"))]
