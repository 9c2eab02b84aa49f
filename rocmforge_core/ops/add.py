"""add(a, b) -> a + b, f32; b has a's shape or is one row broadcast over a's rows (a bias)."""

import numpy as np

from rocmforge_core.ops import Case, OpSpec, Tolerance
from rocmforge_core.ops._cases import call, f32, normal


def reference(a, b):
    return (np.asarray(a, dtype=np.float32) + np.asarray(b, dtype=np.float32)).astype(np.float32)


def _cases(rng, formats):
    yield Case((normal(rng, 7, 96), normal(rng, 7, 96)), label="same shape")
    yield Case((normal(rng, 9, 320), normal(rng, 320)), label="row bias")


SPEC = OpSpec("add", 1, __doc__, Tolerance(nmse=1e-7), _cases, cheap=True,
              representative=lambda fmt, layout: call("add", (f32(1, 4096), f32(1, 4096))))
