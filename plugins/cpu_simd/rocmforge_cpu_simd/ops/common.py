"""Helpers shared by the cpu kernels' Python entry points and capability checks."""

from __future__ import annotations

import numpy as np

from rocmforge_core.ops import Signature, Verdict, no, yes


def f32_args(sig: Signature, *indices: int) -> Verdict:
    for i in indices:
        if i < len(sig.args) and sig.args[i].dtype != "f32":
            return no(f"argument {i} is {sig.args[i].dtype}; the cpu kernel takes f32")
    return yes()


def output(out, shape, dtype=np.float32) -> np.ndarray:
    """The caller's ``out`` buffer (checked) or a new array."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    if out.shape != tuple(shape) or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"out is {out.shape} {out.dtype}, expected a contiguous {tuple(shape)} {np.dtype(dtype)}")
    return out


def f32(x) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)
