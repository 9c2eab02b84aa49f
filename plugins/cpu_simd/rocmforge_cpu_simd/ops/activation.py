"""activation: gated SwiGLU / GeGLU(tanh) in one elementwise pass (rows split over the threads in prefill)."""

from __future__ import annotations

import numpy as np

from numba import prange

from rocmforge_core.ops import Kernel, no
from rocmforge_cpu_simd import threads
from rocmforge_cpu_simd.jit import exp32, fast, serial_and_parallel
from rocmforge_cpu_simd.ops.common import f32, f32_args, output

_SQRT_2_OVER_PI = np.float32(0.7978845608028654)


def _swiglu(g, u, out):
    for r in prange(g.shape[0]):
        for i in range(g.shape[1]):
            x = g[r, i]
            out[r, i] = x / (np.float32(1.0) + exp32(-x)) * u[r, i]


def _geglu_tanh(g, u, out):
    # 0.5 (1 + tanh(y)) = 1 / (1 + exp(-2y)): exp32 vectorises, tanh is a scalar libm call.
    for r in prange(g.shape[0]):
        for i in range(g.shape[1]):
            x = g[r, i]
            y = _SQRT_2_OVER_PI * (x + np.float32(0.044715) * x * x * x)
            out[r, i] = x / (np.float32(1.0) + exp32(np.float32(-2.0) * y)) * u[r, i]


_KINDS = {"swiglu": serial_and_parallel(_swiglu, fast), "geglu_tanh": serial_and_parallel(_geglu_tanh, fast)}


def activation(gate, up, *, kind, out=None):
    if kind not in _KINDS:
        raise ValueError(f"activation kind must be one of {tuple(_KINDS)}, got {kind!r}")
    gate, up = f32(gate), f32(up)
    res = output(out, gate.shape)
    n = gate.shape[-1]
    rows = gate.size // n if n else 0
    _KINDS[kind][threads.split_rows(rows)](gate.reshape(rows, n), up.reshape(rows, n), res.reshape(rows, n))
    return res


def _supports(sig):
    if sig.param("kind") not in _KINDS:
        return no(f"activation kind {sig.param('kind')!r} is not implemented on cpu")
    return f32_args(sig, 0, 1)


def kernels():
    return [Kernel("activation", "cpu", "cpu.activation", activation, _supports)]
