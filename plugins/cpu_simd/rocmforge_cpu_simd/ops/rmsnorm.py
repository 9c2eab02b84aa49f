"""rmsnorm: one pass per row computes the mean square, a second scales; no temporaries; rows split over the
threads in prefill."""

from __future__ import annotations

import numpy as np

from numba import prange

from rocmforge_core.ops import Kernel
from rocmforge_cpu_simd import threads
from rocmforge_cpu_simd.jit import fast, serial_and_parallel
from rocmforge_cpu_simd.ops.common import f32, f32_args, output


def _rmsnorm(x, w, eps, out):
    m, d = x.shape
    for i in prange(m):
        s = np.float32(0.0)
        for j in range(d):
            s += x[i, j] * x[i, j]
        r = np.float32(1.0 / np.sqrt(np.float64(s) / d + eps))
        for j in range(d):
            out[i, j] = x[i, j] * r * w[j]


_RMSNORM = serial_and_parallel(_rmsnorm, fast)


def rmsnorm(x, w, *, eps, out=None):
    x = f32(x)
    d = x.shape[-1]
    res = output(out, x.shape)
    rows = x.size // d if d else 0
    _RMSNORM[threads.split_rows(rows)](x.reshape(rows, d), f32(w), float(eps), res.reshape(rows, d))
    return res


def kernels():
    return [Kernel("rmsnorm", "cpu", "cpu.rmsnorm", rmsnorm, lambda sig: f32_args(sig, 0, 1))]
