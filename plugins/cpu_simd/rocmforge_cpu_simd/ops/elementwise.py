"""add, scale, transpose: numpy's own SIMD loops are already optimal for these; out= avoids allocation."""

from __future__ import annotations

import numpy as np

from rocmforge_core.ops import Kernel, no
from rocmforge_cpu_simd.ops.common import f32_args, output


def add(a, b, *, out=None):
    return np.add(a, b, out=output(out, a.shape), dtype=np.float32)


def scale(x, *, s, out=None):
    return np.multiply(x, np.float32(s), out=output(out, x.shape), dtype=np.float32)


def transpose(x, *, out=None):
    res = output(out, x.shape[::-1])
    res[...] = x.T
    return res


def _add_supports(sig):
    a, b = sig.args
    if b.shape != a.shape and b.shape != a.shape[-1:]:
        return no(f"add broadcasts only a row of {a.shape[-1:]} or the same shape, got {b.shape}")
    return f32_args(sig, 0, 1)


def _transpose_supports(sig):
    return f32_args(sig, 0) if len(sig.args[0].shape) == 2 else no("transpose takes a 2-D array")


def kernels():
    return [Kernel("add", "cpu", "cpu.add", add, _add_supports),
            Kernel("scale", "cpu", "cpu.scale", scale, lambda sig: f32_args(sig, 0)),
            Kernel("transpose", "cpu", "cpu.transpose", transpose, _transpose_supports)]
