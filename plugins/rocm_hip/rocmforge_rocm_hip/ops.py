"""One ``Kernel`` per op for backend "hip": argument checks (``supports``) and launches of the kernels/ sources.

Arguments are this backend's tensors (``DeviceTensor``) and uploaded ``Weight``s; results are new tensors from
the activation pool, except attention's cache update, which is in place as the op says.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np

from rocmforge_core.formats import Weight
from rocmforge_core.ops import Kernel, Signature, Verdict, no, yes
from rocmforge_core.ops import logprobs as logprobs_op
from rocmforge_core.registry import get_registry
from rocmforge_rocm_hip import sources
from rocmforge_rocm_hip.runtime import F32, F64, I32, I64, PTR

MATVEC_MAX_M = 64    # batches up to this many rows (a decode batch) use the batch-invariant matrix-vector kernels
EXACT_FORMATS = ("F32", "F16", "BF16")  # held to 1e-7: the f16 BLAS path would round the activations too much
SAMPLE_MAX_TOP_K = 1024
ATTENTION_SPLIT = 32  # positions per split when few queries attend to a long cache (one wave step each)
DECODE_SPLIT = 32  # positions per split of a decode batch's attention at least (one wave step)
# Splits of a decode batch's attention at most: one wave step of 32 positions each up to caches of 8192, longer
# beyond. A wave walks its split alone, so a long split is latency: a cap of 64 made tg at depth 4096 in a 16k
# cache 1.8x slower (docs/PERF.md); a cap of 1024 was 8 % faster again for 4x the partials' memory. The merge
# kernel takes up to COMBINE_MAX_SPLITS.
DECODE_MAX_SPLITS = 256
THREADS = 256
COMBINE_THREADS = 1024  # RF_COMBINE_THREADS in kernels/attention.hip
COMBINE_MAX_SPLITS = 256  # RF_COMBINE_MAX there
MMQ_GROUPS = 8  # mma groups (32 lanes) per rf_mmq block: RF_MMQ_GROUPS in kernels/quant.hip


def _ptr(value) -> int:
    if value is None:
        return 0
    if isinstance(value, Weight):
        value = value.data
    return value.ptr


def _blocks(n: int, per: int = THREADS) -> int:
    return (int(n) + per - 1) // per


def _format(arg) -> tuple[object, str]:
    """(QuantFormat, '') for a weight or f32 array argument, or (None, why not)."""
    if arg.layout:
        return None, f"weights in layout {arg.layout!r} (hip reads GGUF's own block layout)"
    formats = get_registry().formats
    name = "F32" if arg.dtype == "f32" else arg.dtype
    fmt = formats.get(name)
    if fmt is None:
        return None, f"no format plugin provides {name}"
    if not sources.format_source(fmt):
        return None, f"no hip device code for {name} (its format plugin ships no device.hip)"
    return fmt, ""


def _split(n: int, k: int, chunk: int = 0, wave: int = 32) -> int:
    """Waves sharing one row of a decode product (1, 2 or 4): enough waves in flight to keep memory busy, at least
    2k in all, and no wave without a chunk of its own (``chunk``: elements a lane takes at once, 0 for groups of 8).
    A function of the weight's shape alone, so a product gets the same arithmetic alone, merged with its
    neighbours, or in any batch. Measured on the H100 (Q4_0, groups of 8, weights streamed from memory): a
    2048 x 8192 product (ffn_down) took 7.7 us with 4 waves per row against 13.1 with one; 2048 x 2048 3.1 us with
    2 against 4.1."""
    split = 1
    while split < 4 and n * split < 2 * k:
        split *= 2
    while chunk and split > 1 and k // chunk < wave * split:
        split //= 2
    return split


def _mmq_split(k: int, unit: int) -> int:
    """Groups sharing the units of a row in rf_mmq and rf_mmv (1, 2, 4 or 8; mma groups there, lanes here): 8
    where each gets at least two units. A function of the weight's shape alone, so that a row's arithmetic is the
    same in every batch, also of 1 row (rf_mmv)."""
    split, units = 1, k // unit
    while split < MMQ_GROUPS and units >= 4 * split:
        split *= 2
    return split


def _mmv_lanes(k: int, unit: int, split: int) -> int:
    """Lanes taking one row of w in rf_mmv (a multiple of the split, up to 32): rf_mmv_lanes in kernels/quant.hip.
    More lanes per row than partials keep more of a row's units in flight at once."""
    lanes, units = split, k // unit
    while lanes < 32 and units >= 2 * lanes:
        lanes *= 2
    return lanes


def _attention_heads(group: int) -> int:
    """Query heads per wave of rf_attention (the entry points rf_attention_g1 .. g8): the smallest that holds the
    ``group`` query heads sharing a kv head, so that each key and value row is read once for all of them."""
    heads = 1
    while heads < min(group, 8):
        heads *= 2
    return heads


@dataclass
class Product:
    """One decode product out = x . w for the m rows of x (quantized to xq, xd), waiting to be launched
    (HipBackend.defer); with ``total``, the residual add that follows it as well: total = out + residual."""
    unit: object
    xq: object
    xd: object
    w: object
    out: object
    m: int
    n: int
    k: int
    row_bytes: int
    residual: object = None
    total: object = None

    def joins(self, other: "Product", pending: int) -> bool:
        """Whether ``other`` can share a launch with this one and the others pending: same input, same kernel."""
        return (pending < 3 and self.total is None and other.xq is self.xq and other.unit == self.unit
                and other.k == self.k and other.m == self.m)

    @staticmethod
    def launch(be, products: list["Product"]) -> None:
        """One launch for products of one input: rf_mmq_* where the tile product exists, else rf_matvec_q8[_batch];
        the _multi form for two or three."""
        p0 = products[0]
        mma = sources.mma_unit(p0.unit.fmt_source) if be.runtime.mma_s8 else 0
        if mma:
            splits = [_mmq_split(p.k, mma) for p in products]
            if p0.m == 1:  # rf_mmv: 32 / lanes rows per mma group, the same arithmetic
                kernel, per = "rf_mmv", [MMQ_GROUPS * (32 // _mmv_lanes(p.k, mma, s)) for p, s in zip(products, splits)]
            else:
                rt, nt = sources.mma_tile(p0.m)
                kernel, per = f"rf_mmq_{rt}_{nt}", [16 * rt * (MMQ_GROUPS // s) for s in splits]
            threads = (MMQ_GROUPS * 32,)
            blocks = [_blocks(p.n, r) for p, r in zip(products, per)]
        else:
            wave = be.runtime.info.wave_size
            kernel, threads = ("rf_matvec_q8" if p0.m == 1 else "rf_matvec_q8_batch"), (4 * wave,)
            splits = [_split(p.n, p.k, sources.chunk_size(p.unit.fmt_source), wave) for p in products]
            blocks = [_blocks(p.n, 4 // s) for p, s in zip(products, splits)]
        if len(products) == 1:
            be.launch(p0.unit, kernel, (blocks[0],), threads,
                      [(p0.xq.ptr, PTR), (p0.xd.ptr, PTR), (_ptr(p0.w), PTR), (p0.out.ptr, PTR), (p0.m, I32),
                       (p0.n, I32), (p0.k, I32), (p0.row_bytes, I64), (splits[0], I32), (_ptr(p0.residual), PTR),
                       (_ptr(p0.total), PTR)])
            return
        segments, start = [], 0
        for i in range(3):
            j = min(i, len(products) - 1)
            p = products[j]
            present = i < len(products)  # an absent third segment: no rows, no blocks
            segments += [(_ptr(p.w), PTR), (p.out.ptr, PTR), (p.n if present else 0, I32), (splits[j], I32)]
            segments += [(start, I32)] if i else []
            start += blocks[j] if present else 0
        be.launch(p0.unit, kernel + "_multi", (start,), threads,
                  [(p0.xq.ptr, PTR), (p0.xd.ptr, PTR), (p0.m, I32), (p0.k, I32), (p0.row_bytes, I64)] + segments)


@dataclass
class Rope:
    """A rope waiting to be launched (HipBackend.defer): the next one of the same positions and parameters (k
    after q) shares its launch."""
    x: object
    out: object
    positions: object
    freq_factors: object
    params: tuple  # base, mode, n_rot, freq_scale

    def joins(self, other: "Rope", pending: int) -> bool:
        return (pending < 2 and other.positions is self.positions and other.freq_factors is self.freq_factors
                and other.params == self.params and other.x.shape[::2] == self.x.shape[::2])

    @staticmethod
    def launch(be, ropes: list["Rope"]) -> None:
        r = ropes[0]
        m, heads, d = r.x.shape
        r2 = ropes[1] if len(ropes) > 1 else None
        heads2 = r2.x.shape[1] if r2 else 0
        base, mode, n_rot, freq_scale = r.params
        be.launch(sources.ELEMENTWISE, "rf_rope", (_blocks(m * (heads + heads2) * (d // 2)),), (THREADS,),
                  [(r.x.ptr, PTR), (r.positions.ptr, PTR), (_ptr(r.freq_factors), PTR), (r.out.ptr, PTR), (m, I32),
                   (heads, I32), (d, I32), (n_rot, I32), (base, F64), (freq_scale, F64), (int(mode == "neox"), I32),
                   (_ptr(r2 and r2.x), PTR), (_ptr(r2 and r2.out), PTR), (heads2, I32)])


def _row_bytes(fmt, k: int) -> int:
    return k // fmt.block_size * fmt.type_size


def _check_rows(sig: Signature, i: int = 0) -> Verdict:
    arg = sig.args[i]
    fmt, why = _format(arg)
    if fmt is None:
        return no(why)
    if arg.shape[-1] % 8:
        return no(f"hip kernels read rows in groups of 8 elements; rows of {arg.shape[-1]} are not")
    return yes()


class HipOps:
    """The op implementations, bound to one backend instance."""

    def __init__(self, backend) -> None:
        self.be = backend
        self._f32 = None

    @property
    def f32(self):
        """The F32 format, whose device code reads plain f32 arrays passed where a weight may be (looked up once)."""
        if self._f32 is None:
            self._f32 = get_registry().format("F32")
        return self._f32

    # -- elementwise -----------------------------------------------------------------------------------------
    def add(self, a, b):
        pending = self.be.pending
        if (len(pending) == 1 and isinstance(pending[0], Product) and pending[0].total is None
                and a.size == b.size and (pending[0].out is a or pending[0].out is b)):
            # a residual add right after the product that made one side (while capturing): that product does it
            pending[0].residual, pending[0].total = (b if pending[0].out is a else a), self.be.empty(a.shape, "f32")
            return pending[0].total
        out = self.be.empty(a.shape, "f32")
        self.be.launch(sources.ELEMENTWISE, "rf_add", (_blocks(a.size),), (THREADS,),
                       [(a.ptr, PTR), (b.ptr, PTR), (out.ptr, PTR), (a.size, I64), (b.size, I64)])
        return out

    def scale(self, x, *, s):
        out = self.be.empty(x.shape, "f32")
        self.be.launch(sources.ELEMENTWISE, "rf_scale", (_blocks(x.size),), (THREADS,),
                       [(x.ptr, PTR), (out.ptr, PTR), (x.size, I64), (float(np.float32(s)), F32)])
        return out

    def activation(self, gate, up, *, kind):
        out = self.be.empty(gate.shape, "f32")
        self.be.launch(sources.ELEMENTWISE, "rf_activation", (_blocks(gate.size),), (THREADS,),
                       [(gate.ptr, PTR), (up.ptr, PTR), (out.ptr, PTR), (gate.size, I64),
                        ({"swiglu": 0, "geglu_tanh": 1}[kind], I32)] + self._q8_outputs(out))
        return out

    def rmsnorm(self, x, w, *, eps):
        d = x.shape[-1]
        rows = x.size // d
        out = self.be.empty(x.shape, "f32")
        wave = self.be.runtime.info.wave_size  # up to 4 elements per thread, at most 1024 threads
        threads = min(1024, max(wave, -(-d // (4 * wave)) * wave))
        self.be.launch(sources.ELEMENTWISE, "rf_rmsnorm", (rows,), (threads,),
                       [(x.ptr, PTR), (_ptr(w), PTR), (out.ptr, PTR), (d, I32), (float(eps), F32)]
                       + self._q8_outputs(out))
        return out

    def rope(self, x, positions, freq_factors=None, *, base, mode, n_rot=0, freq_scale=1.0):
        rope = Rope(x, self.be.empty(x.shape, "f32"), positions, freq_factors,
                    (float(base), mode, int(n_rot or x.shape[-1]), float(freq_scale)))
        if self.be.capturing:
            self.be.defer(rope)
        else:
            Rope.launch(self.be, [rope])
        return rope.out

    def transpose(self, x):
        rows, cols = x.shape
        out = self.be.empty((cols, rows), "f32")
        self.be.launch(sources.ELEMENTWISE, "rf_transpose", (_blocks(cols, 32), _blocks(rows, 32)), (32, 8),
                       [(x.ptr, PTR), (out.ptr, PTR), (rows, I32), (cols, I32)])
        return out

    # -- quantized weights -----------------------------------------------------------------------------------
    def _fmt(self, w):
        return w.format if isinstance(w, Weight) else self.f32

    def rows(self, w, ids, n_rows: int, k: int, f16: bool = False):
        """Rows of a weight (all, or ``ids``) dequantized exactly, f32 (or f16) [n_rows, k]."""
        fmt = self._fmt(w)
        out = self.be.empty((n_rows, k), "f16" if f16 else "f32")
        self.be.launch(sources.quant_unit(fmt, exact=True), "rf_rows_f16" if f16 else "rf_rows_f32",
                       (_blocks(n_rows * (k // 8)),), (THREADS,),
                       [(_ptr(w), PTR), (_ptr(ids), PTR), (out.ptr, PTR), (n_rows, I32), (k, I32),
                        (_row_bytes(fmt, k), I64)])
        return out

    def _quantized(self, x, m: int, k: int):
        """x (m rows of k) as 8-bit values and per-32 scales, reused while the backend's q8_cache holds x (the
        kernel that produced x may have made them, see _q8_outputs)."""
        cached = self.be.q8_cache
        if cached is not None and cached[0]() is x._block and cached[1] == (x.ptr, m * k):
            return cached[2], cached[3]
        xq, xd = self._q8_buffers(x, m * k)
        self.be.launch(sources.ELEMENTWISE, "rf_quantize_q8", (_blocks(m * k),), (THREADS,),
                       [(x.ptr, PTR), (xq.ptr, PTR), (xd.ptr, PTR), (m * k, I32)])
        return xq, xd

    def _q8_buffers(self, x, size: int):
        xq, xd = self.be.empty((size,), "u8"), self.be.empty((size // 32,), "f32")
        self.be.q8_cache = (weakref.ref(x._block), (x.ptr, size), xq, xd)
        return xq, xd

    def _q8_outputs(self, out) -> list:
        """Kernel arguments (xq, xd) asking a kernel that writes ``out`` to quantize it as well, for the
        integer-dot products that usually follow (q/k/v after a norm, ffn_down after the activation); null
        pointers when out is no decode batch (at most MATVEC_MAX_M rows) of rows of whole 32s."""
        k = out.shape[-1] if out.shape else 0
        if not k or k % 32 or out.size // k > MATVEC_MAX_M:
            return [(0, PTR), (0, PTR)]
        xq, xd = self._q8_buffers(out, out.size)
        return [(xq.ptr, PTR), (xd.ptr, PTR)]

    def embedding(self, table, ids):
        k = table.shape[-1]
        return self.rows(table, ids, ids.size, k)

    def dequant(self, w):
        k = w.shape[-1]
        out = self.rows(w, None, int(np.prod(w.shape[:-1], dtype=np.int64)), k)
        return out.reshape(*w.shape)

    def matmul(self, x, w):
        m, k = x.size // x.shape[-1], x.shape[-1]
        n = w.shape[0]
        fmt = self._fmt(w)
        unit = sources.quant_unit(fmt)
        out = self.be.empty((m, n), "f32")
        args = [(x.ptr, PTR), (_ptr(w), PTR), (out.ptr, PTR)]
        blas = self.be.blas if m > MATVEC_MAX_M and fmt.name not in EXACT_FORMATS else None
        if m <= MATVEC_MAX_M and k % 32 == 0 and sources.has_dot8_q8(fmt):
            xq, xd = self._quantized(x, m, k)
            product = Product(unit, xq, xd, w, out, m, n, k, _row_bytes(fmt, k))
            if self.be.capturing:
                self.be.defer(product)
            else:
                Product.launch(self.be, [product])
        elif m <= MATVEC_MAX_M:
            split = _split(n, k)
            self.be.launch(unit, "rf_matvec", (_blocks(n, 4 // split),), (4 * self.be.runtime.info.wave_size,),
                           args + [(m, I32), (n, I32), (k, I32), (_row_bytes(fmt, k), I64), (split, I32)])
        elif blas is not None:
            w16 = self.rows(w, None, n, k, f16=True)
            x16 = self.be.empty((m, k), "f16")
            self.be.launch(sources.ELEMENTWISE, "rf_to_f16", (_blocks(m * k),), (THREADS,),
                           [(x.ptr, PTR), (x16.ptr, PTR), (m * k, I64)])
            blas.gemm_f16(m, n, k, x16.ptr, w16.ptr, out.ptr)
        else:
            self.be.launch(unit, "rf_matmul_tiled", (_blocks(n, 64), _blocks(m, 64)), (256,),
                           args + [(m, I32), (n, I32), (k, I32), (_row_bytes(fmt, k), I64)])
        return out

    # -- attention -------------------------------------------------------------------------------------------
    def attention(self, q, k, v, k_cache, v_cache, block_tables, seq_ids, positions, *, scale, window=0,
                  softcap=0.0):
        m, hq, d = q.shape
        hkv, dv = k.shape[1], v.shape[2]
        bs, mb = k_cache.shape[1], block_tables.shape[1]
        unit = sources.attention_unit(d, dv, k_cache.dtype_name == "f16")
        table_args = [(block_tables.ptr, PTR), (mb, I32), (seq_ids.ptr, PTR), (positions.ptr, PTR)]
        if m > 1:  # tokens that attend to each other: their rows first (one token: rf_attention writes its own)
            self.be.launch(unit, "rf_kv_write", (_blocks(m * hkv * max(d, dv)),), (THREADS,),
                           [(k.ptr, PTR), (v.ptr, PTR), (k_cache.ptr, PTR), (v_cache.ptr, PTR)] + table_args
                           + [(m, I32), (hkv, I32), (bs, I32)])
        own = [(k.ptr, PTR), (v.ptr, PTR)] if m == 1 else [(0, PTR), (0, PTR)]
        wave = self.be.runtime.info.wave_size
        items = m * hq
        context = mb * bs
        if m <= MATVEC_MAX_M:
            # A decode batch: splits of a length fixed by the cache's size alone, so a token's softmax is summed in
            # the same pieces in any batch (batch invariance): 32 positions, or more for caches over 8192 so that
            # there are at most DECODE_MAX_SPLITS; splits past a token's position exit at once.
            split_len = max(DECODE_SPLIT, 1 << (math.ceil(context / DECODE_MAX_SPLITS) - 1).bit_length())
            splits = math.ceil(context / split_len)
        else:
            splits = 1
            if items < 1024 and context > ATTENTION_SPLIT:  # few queries, long cache: spread positions over blocks
                splits = min(64, math.ceil(context / ATTENTION_SPLIT))
            split_len = math.ceil(math.ceil(context / splits) / wave) * wave
        out = self.be.empty((m, hq, dv), "f32")
        part = self.be.empty((splits, items, dv + 2), "f32") if splits > 1 else None
        heads = _attention_heads(hq // hkv)
        waves = m * hkv * -(-(hq // hkv) // heads)
        self.be.launch(unit, f"rf_attention_g{heads}", (_blocks(waves, 4), splits), (4 * wave,),
                       [(q.ptr, PTR), (k_cache.ptr, PTR), (v_cache.ptr, PTR)] + table_args
                       + [(out.ptr, PTR), (_ptr(part), PTR), (m, I32), (hq, I32), (hkv, I32), (bs, I32),
                          (float(scale), F32), (int(window), I32), (float(softcap), F32), (split_len, I32)]
                       + own)
        if splits > 1:
            assert splits <= COMBINE_MAX_SPLITS, f"{splits} attention splits, the merge takes {COMBINE_MAX_SPLITS}"
            q8 = self._q8_outputs(out.reshape(m, hq * dv)) if dv % 32 == 0 else [(0, PTR), (0, PTR)]
            self.be.launch(unit, "rf_attention_combine", (items,), (COMBINE_THREADS,),
                           [(part.ptr, PTR), (out.ptr, PTR), (items, I32), (splits, I32)] + q8
                           + [(positions.ptr, PTR), (hq, I32), (split_len, I32)])
        return out

    # -- sampling --------------------------------------------------------------------------------------------
    def sample(self, logits, history, params, controls, mask, bias_ids, bias_values, *, candidates):
        rows, vocab = logits.shape
        out = self.be.empty((rows,), "i32")
        work = self.be.empty((rows, vocab), "f32")
        self.be.launch(sources.SAMPLE, "rf_sample", (rows,), (1024,),
                       [(logits.ptr, PTR), (work.ptr, PTR), (vocab, I32), (history.ptr, PTR), (history.shape[1], I32),
                        (params.ptr, PTR), (controls.ptr, PTR), (mask.ptr, PTR), (bias_ids.ptr, PTR),
                        (bias_values.ptr, PTR), (bias_ids.shape[1], I32), (out.ptr, PTR)])
        return out

    def logprobs(self, logits, tokens, *, top):
        rows, vocab = logits.shape
        out = self.be.empty((rows, 1 + 2 * top), "f32")
        self.be.launch(sources.SAMPLE, "rf_logprobs", (rows,), (1024,),
                       [(logits.ptr, PTR), (vocab, I32), (tokens.ptr, PTR), (int(top), I32), (out.ptr, PTR)])
        return out


# -- capability ------------------------------------------------------------------------------------------------

def _f32(sig: Signature, *idx: int) -> Verdict:
    for i in idx:
        if sig.args[i].dtype != "f32":
            return no(f"hip {sig.op} takes f32 inputs, argument {i} is {sig.args[i].dtype}")
    return yes()


def _supports_add(sig):
    a, b = sig.args
    ok = _f32(sig, 0, 1)
    if not ok:
        return ok
    size_a, size_b = int(np.prod(a.shape)), int(np.prod(b.shape))
    if size_b != size_a and size_b != a.shape[-1]:
        return no(f"hip add broadcasts only one row: {list(b.shape)} over {list(a.shape)}")
    return yes()


def _supports_rmsnorm(sig):
    x, w = sig.args
    if x.dtype != "f32" or w.dtype not in ("f32", "F32") or w.layout:
        return no(f"hip rmsnorm takes f32 x and f32 weights, got {x.dtype} and {w.dtype}")
    return yes()


def _supports_rope(sig):
    x, pos = sig.args[0], sig.args[1]
    if x.dtype != "f32" or pos.dtype != "i32" or len(x.shape) != 3:
        return no("hip rope takes f32 [m, heads, head_dim] and i32 positions")
    n_rot = sig.param("n_rot", 0) or x.shape[-1]
    if n_rot % 2 or n_rot > x.shape[-1] or x.shape[-1] % 2:
        return no(f"hip rope needs an even n_rot <= head_dim, got {n_rot} of {x.shape[-1]}")
    if sig.param("mode") not in ("normal", "neox"):
        return no(f"unknown rope mode {sig.param('mode')!r}")
    return yes()


def _supports_transpose(sig):
    if len(sig.args[0].shape) != 2:
        return no("hip transpose takes 2-D arrays")
    return _f32(sig, 0)


def _supports_embedding(sig):
    table, ids = sig.args
    if ids.dtype != "i32":
        return no(f"hip embedding takes i32 ids, got {ids.dtype}")
    return _check_rows(sig, 0)


def _supports_matmul(sig):
    x, w = sig.args
    if x.dtype != "f32":
        return no(f"hip matmul takes f32 activations, got {x.dtype}")
    ok = _check_rows(sig, 1)
    if not ok:
        return ok
    m = int(np.prod(x.shape[:-1]))
    if m > MATVEC_MAX_M and w.shape[-1] % 32:
        return no(f"hip prefill matmul needs k % 32 == 0, got k={w.shape[-1]}")
    return yes()


def _supports_attention(sig):
    q, k, v, kc, vc = sig.args[:5]
    if kc.dtype != vc.dtype or kc.dtype not in ("f32", "f16"):
        return no(f"hip attention needs f32 or f16 caches, got {kc.dtype}/{vc.dtype}")
    if q.shape[-1] > 512 or v.shape[-1] > 512 or q.shape[-1] % 8:
        return no(f"hip attention supports key head dims that are multiples of 8 up to 512, got {q.shape[-1]}")
    if q.shape[1] % k.shape[1]:
        return no(f"query heads {q.shape[1]} are not a multiple of kv heads {k.shape[1]}")
    return yes()


def _supports_sample(sig):
    logits = sig.args[0]
    if logits.dtype != "f32" or len(logits.shape) != 2:
        return no("hip sample takes f32 logits [rows, vocab]")
    mask, ids, values = sig.args[4:7]
    if mask.dtype != "i32" or mask.shape[1] != -(-logits.shape[1] // 32) or ids.dtype != "i64" \
            or values.dtype != "f32" or ids.shape != values.shape:
        return no("hip sample takes an i32 mask of ceil(vocab/32) words and an i64/f32 bias of one shape")
    candidates = sig.param("candidates", logits.shape[1])
    if candidates == 1:
        return yes("greedy")
    if candidates > SAMPLE_MAX_TOP_K:
        return no(f"hip sample draws from at most {SAMPLE_MAX_TOP_K} top-k candidates; a call keeping {candidates} "
                  "runs on another backend")
    return yes()


SUPPORTS = {
    "add": _supports_add,
    "scale": lambda sig: _f32(sig, 0),
    "activation": lambda sig: _f32(sig, 0, 1) if sig.param("kind") in ("swiglu", "geglu_tanh")
    else no(f"unknown activation {sig.param('kind')!r}"),
    "rmsnorm": _supports_rmsnorm,
    "rope": _supports_rope,
    "transpose": _supports_transpose,
    "embedding": _supports_embedding,
    "dequant": lambda sig: _check_rows(sig, 0),
    "matmul": _supports_matmul,
    "attention": _supports_attention,
    "sample": _supports_sample,
    "logprobs": lambda sig: logprobs_op.supported(sig, "hip"),
}


def kernels(backend) -> list[Kernel]:
    impl = HipOps(backend)
    return [Kernel(op, "hip", f"hip.{op}", getattr(impl, op), check) for op, check in SUPPORTS.items()]
