"""An rmsnorm kernel for the ``reference`` backend, computed differently from the op's reference: float32
throughout, the sum of squares as a matrix-vector product (a BLAS call) instead of a float64 mean."""

import numpy as np

from rocmforge_core.ops import Kernel, Signature, no, yes


def rmsnorm(x, w, *, eps):
    d = x.shape[-1]
    sum_sq = np.einsum("...i,...i->...", x, x, dtype=np.float32)
    return (x * (1.0 / np.sqrt(sum_sq / np.float32(d) + np.float32(eps)))[..., None] * w).astype(np.float32)


def supports(sig: Signature):
    x, w = sig.args
    if x.dtype != "f32" or w.dtype != "f32":
        return no(f"example rmsnorm takes f32 arrays, not {x.dtype} and {w.dtype}")
    if w.shape != x.shape[-1:]:
        return no(f"weight shape {list(w.shape)} does not match rows of {x.shape[-1]}")
    return yes("f32 rows")


# priority -1: capable, but the reference backend's own kernel (priority 0) stays the oracle's first choice.
KERNEL = Kernel("rmsnorm", "reference", "example.rmsnorm", rmsnorm, supports, priority=-1)
