"""rmsnorm: one pass per row computes the mean square, a second scales; no temporaries."""

from __future__ import annotations

import numpy as np

from rocmforge_core.ops import Kernel
from rocmforge_cpu_simd.jit import fast
from rocmforge_cpu_simd.ops.common import f32, f32_args, output


@fast
def _rmsnorm(x, w, eps, out):
    m, d = x.shape
    for i in range(m):
        s = np.float32(0.0)
        for j in range(d):
            s += x[i, j] * x[i, j]
        r = np.float32(1.0 / np.sqrt(np.float64(s) / d + eps))
        for j in range(d):
            out[i, j] = x[i, j] * r * w[j]


def rmsnorm(x, w, *, eps, out=None):
    x = f32(x)
    d = x.shape[-1]
    res = output(out, x.shape)
    _rmsnorm(x.reshape(-1, d), f32(w), float(eps), res.reshape(-1, d))
    return res


def kernels():
    return [Kernel("rmsnorm", "cpu", "cpu.rmsnorm", rmsnorm, lambda sig: f32_args(sig, 0, 1))]
