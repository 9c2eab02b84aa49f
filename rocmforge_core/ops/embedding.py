"""embedding(table, ids) -> f32[n, d]: rows ``ids`` of ``table`` (a weight of any format, or an f32 array).

Also used to pick rows of activations (e.g. the last prompt position before the output matmul)."""

import numpy as np

from rocmforge_core.ops import Case, OpSpec, Tolerance
from rocmforge_core.ops._cases import normal, weights


def reference(table, ids):
    ids = np.asarray(ids, dtype=np.int64)
    if isinstance(table, np.ndarray):
        return table[ids].astype(np.float32)
    if table.layout == "f32":
        return table.data[ids]
    # Dequantize only the rows asked for: a 262k-row vocabulary stays quantized.
    from rocmforge_core.registry import get_registry
    rows = np.asarray(table.data)[ids]
    return get_registry().format(table.fmt).dequantize(rows).reshape(len(ids), table.shape[-1])


def _cases(rng, formats):
    for fmt, w in weights(rng, formats, 50, 256):
        yield Case((w, rng.integers(0, 50, 7).astype(np.int32)), label=fmt.name)
    yield Case((normal(rng, 9, 64), np.array([8, 0, 3], dtype=np.int32)), label="f32 activations")


SPEC = OpSpec("embedding", 1, __doc__, Tolerance(nmse=1e-7), _cases)
