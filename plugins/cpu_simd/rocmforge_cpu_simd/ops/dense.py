"""Weights without a native cpu kernel: float32 arrays (layout "f32") and GGUF-layout blocks of any format.

matmul multiplies by tiles of (dequantized) rows through BLAS sgemm, spread over the threads (gemm.py).
Formats with native kernels (see their cpu.py) run on quantized blocks instead; these kernels rank below them.
"""

from __future__ import annotations

import numpy as np

from rocmforge_core.formats import Weight
from rocmforge_core.ops import Kernel, no, yes
from rocmforge_core.registry import get_registry
from rocmforge_cpu_simd.gemm import tiled_sgemm
from rocmforge_cpu_simd.ops.common import f32, output


def _dequantize_rows(w: Weight, start: int, stop: int) -> np.ndarray:
    return w.format.dequantize(np.asarray(w.data[start:stop])).reshape(stop - start, w.shape[-1])


def _rows(w) -> np.ndarray | None:
    """The float32 rows of an array or f32-layout weight; None for blocks that need dequantizing."""
    if isinstance(w, np.ndarray):
        return w
    return w.data if w.layout == "f32" else None


def matmul(x, w, *, out=None):
    x = f32(x)
    n = w.shape[0]
    res = output(out, (x.shape[0], n))
    rows = _rows(w)
    if rows is not None:
        return tiled_sgemm(x, n, lambda r0, r1, buf: rows[r0:r1], res)
    return tiled_sgemm(x, n, lambda r0, r1, buf: _dequantize_rows(w, r0, r1), res)


def dequant(w, *, out=None):
    rows = _rows(w)
    res = output(out, tuple(w.shape))
    res[...] = rows if rows is not None else _dequantize_rows(w, 0, w.shape[0])
    return res


def embedding(table, ids, *, out=None):
    ids = np.asarray(ids, dtype=np.int64)
    res = output(out, (len(ids), table.shape[-1]))
    rows = _rows(table)
    if rows is not None:
        return np.take(rows, ids, axis=0, out=res)
    res[...] = table.format.dequantize(np.asarray(table.data)[ids]).reshape(len(ids), table.shape[-1])
    return res


def _weight_verdict(info, what: str):
    if info.dtype == "f32" and info.layout in ("", "f32"):
        return yes(f"{what}: float32 rows")
    if info.layout == "f32":
        return yes(f"{what}: float32 rows")
    if info.layout:
        return no(f"layout {info.layout!r} belongs to another kernel")
    try:
        get_registry().format(info.dtype)
    except Exception as exc:
        return no(str(exc))
    return yes(f"{what}: dequantize tiles of {info.dtype} rows with the format's numpy dequantizer (no native "
               f"cpu kernel for this layout)")


def _matmul_supports(sig):
    x, w = sig.args
    if x.dtype != "f32" or len(x.shape) != 2 or len(w.shape) != 2 or x.shape[1] != w.shape[1]:
        return no(f"matmul needs x f32[m, k] and w [n, k], got {x.dtype}{list(x.shape)} and {list(w.shape)}")
    return _weight_verdict(w, "BLAS sgemm")


def kernels():
    return [
        Kernel("matmul", "cpu", "cpu.matmul.dense", matmul, _matmul_supports, priority=-10),
        Kernel("dequant", "cpu", "cpu.dequant.dense", dequant, lambda sig: _weight_verdict(sig.args[0], "copy"),
               priority=-10),
        Kernel("embedding", "cpu", "cpu.embedding.dense", embedding,
               lambda sig: _weight_verdict(sig.args[0], "row gather"), priority=-10),
    ]
