"""embedding(table, ids) -> f32[n, d]: rows ``ids`` of ``table`` (a weight of any format, or an f32 array).

Also used to pick rows of activations (e.g. the last prompt position before the output matmul)."""

import numpy as np

from rocmforge_core.ops import Case, OpSpec, Tolerance, itemsize
from rocmforge_core.ops._cases import call, i32, normal, weight_arg, weights


def reference(table, ids):
    ids = np.asarray(ids, dtype=np.int64)
    if isinstance(table, np.ndarray):
        return table[ids].astype(np.float32)
    if table.layout == "f32":
        return table.data[ids]
    # Dequantize only the rows asked for: a 262k-row vocabulary stays quantized.
    rows = np.asarray(table.data)[ids]
    return table.format.dequantize(rows).reshape(len(ids), table.shape[-1])


def _cases(rng, formats):
    for fmt, w in weights(rng, formats, 50, 256):
        yield Case((w, rng.integers(0, 50, 7).astype(np.int32)), label=fmt.name)
    yield Case((normal(rng, 9, 64), np.array([8, 0, 3], dtype=np.int32)), label="f32 activations")


def _work(sig, formats):
    """A gather: only the rows asked for are read."""
    table, ids = sig.args
    rows, width = ids.shape[0], table.shape[-1]
    return float(rows * width), rows * width * (itemsize(table.dtype, formats) + 4.0)


SPEC = OpSpec("embedding", 1, __doc__, Tolerance(nmse=1e-7), _cases, weights=(0,), work=_work,
              out_shape=lambda args, params: ((args[1].shape[0], args[0].shape[-1]), "f32"),
              representative=lambda fmt, layout: call("embedding", (weight_arg(fmt, layout, 32000, 4096), i32(1))))
