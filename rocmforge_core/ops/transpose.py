"""transpose(x) -> x.T for a 2-D f32 array, materialized contiguous."""

import numpy as np

from rocmforge_core.ops import Case, OpSpec, Tolerance
from rocmforge_core.ops._cases import call, f32, normal


def reference(x):
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32).T)


def _cases(rng, formats):
    for shape in ((1, 7), (33, 65), (128, 256)):
        yield Case((normal(rng, *shape),), label=f"{shape}")


SPEC = OpSpec("transpose", 1, __doc__, Tolerance(nmse=0.0), _cases, cheap=True,
              out_shape=lambda args, params: ((args[0].shape[1], args[0].shape[0]), "f32"),
              representative=lambda fmt, layout: call("transpose", (f32(64, 128),)))
