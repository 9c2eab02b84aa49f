"""scale(x, *, s) -> x * s, f32."""

import numpy as np

from rocmforge_core.ops import Case, OpSpec, Tolerance
from rocmforge_core.ops._cases import call, f32, normal


def reference(x, *, s):
    return (np.asarray(x, dtype=np.float32) * np.float32(s)).astype(np.float32)


def _cases(rng, formats):
    yield Case((normal(rng, 5, 640),), {"s": 25.298221281347036}, label="embedding scale")


SPEC = OpSpec("scale", 1, __doc__, Tolerance(nmse=1e-7), _cases, cheap=True,
              representative=lambda fmt, layout: call("scale", (f32(1, 4096),), s=0.5))
