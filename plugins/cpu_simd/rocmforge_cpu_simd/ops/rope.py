"""rope: angles computed once per (token, pair) in float64 as the reference does, applied to every head."""

from __future__ import annotations

import numpy as np

from rocmforge_core.ops import Kernel, no
from rocmforge_cpu_simd.jit import fast
from rocmforge_cpu_simd.ops.common import f32, f32_args, output

_NO_FACTORS = np.ones(0, dtype=np.float32)


@fast
def _rope(x, positions, factors, base, freq_scale, n_rot, neox, out):
    m, h, d = x.shape
    half = n_rot // 2
    inv = np.empty(half, dtype=np.float64)
    for i in range(half):
        inv[i] = base ** (-2.0 * i / n_rot)
        if factors.shape[0]:
            inv[i] = inv[i] / factors[i]
    for t in range(m):
        for i in range(half):
            theta = np.float64(positions[t]) * freq_scale * inv[i]
            c = np.float32(np.cos(theta))
            s = np.float32(np.sin(theta))
            ia, ib = (i, i + half) if neox else (2 * i, 2 * i + 1)
            for k in range(h):
                a = x[t, k, ia]
                b = x[t, k, ib]
                out[t, k, ia] = a * c - b * s
                out[t, k, ib] = a * s + b * c
        for k in range(h):
            for j in range(n_rot, d):
                out[t, k, j] = x[t, k, j]


def rope(x, positions, freq_factors=None, *, base, mode, n_rot=0, freq_scale=1.0, out=None):
    if mode not in ("normal", "neox"):
        raise ValueError(f"rope mode must be one of ('normal', 'neox'), got {mode!r}")
    x = f32(x)
    res = output(out, x.shape)
    factors = _NO_FACTORS if freq_factors is None else f32(freq_factors)
    _rope(x, np.asarray(positions), factors, float(base), float(freq_scale), int(n_rot or x.shape[-1]),
          mode == "neox", res)
    return res


def _supports(sig):
    if len(sig.args[0].shape) != 3:
        return no("rope takes x as [tokens, heads, head_dim]")
    return f32_args(sig, 0)


def kernels():
    return [Kernel("rope", "cpu", "cpu.rope", rope, _supports)]
