"""rmsnorm(x, w, eps) -> x / sqrt(mean(x^2, last axis) + eps) * w, x f32[m, d], w f32[d].

Per-head q/k norms call it on [m * heads, head_dim]."""

import numpy as np

from rocmforge_core.ops import Case, OpSpec, Tolerance
from rocmforge_core.ops._cases import call, f32, normal


def reference(x, w, *, eps):
    x = np.asarray(x, dtype=np.float32)
    ms = np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True)
    return (x / np.sqrt(ms + eps) * np.asarray(w, dtype=np.float32)).astype(np.float32)


def _cases(rng, formats):
    for m, d in ((1, 64), (7, 576), (33, 2048)):
        yield Case((normal(rng, m, d, scale=3.0), normal(rng, d)), {"eps": 1e-6}, label=f"{m}x{d}")


SPEC = OpSpec("rmsnorm", 1, __doc__, Tolerance(nmse=1e-7), _cases, cheap=True,
              representative=lambda fmt, layout: call("rmsnorm", (f32(1, 4096), f32(4096)), eps=1e-6))
