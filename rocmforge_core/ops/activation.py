"""activation(gate, up, *, kind) -> f32[m, f]: kind 'swiglu' is silu(gate) * up, 'geglu_tanh' is
gelu_tanh(gate) * up with gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""

import numpy as np

from rocmforge_core.ops import Case, OpSpec, Tolerance
from rocmforge_core.ops._cases import call, f32, normal

KINDS = ("swiglu", "geglu_tanh")
_SQRT_2_OVER_PI = 0.7978845608028654


def reference(gate, up, *, kind):
    g = np.asarray(gate, dtype=np.float64)
    if kind == "swiglu":
        act = g / (1.0 + np.exp(-g))
    elif kind == "geglu_tanh":
        act = 0.5 * g * (1.0 + np.tanh(_SQRT_2_OVER_PI * (g + 0.044715 * g ** 3)))
    else:
        raise ValueError(f"activation kind must be one of {KINDS}, got {kind!r}")
    return (act * np.asarray(up, dtype=np.float64)).astype(np.float32)


def _cases(rng, formats):
    for kind in KINDS:
        for m, f in ((1, 256), (13, 1536)):
            yield Case((normal(rng, m, f, scale=3.0), normal(rng, m, f)), {"kind": kind}, label=f"{kind} {m}x{f}")


SPEC = OpSpec("activation", 1, __doc__, Tolerance(nmse=1e-7), _cases, cheap=True,
              representative=lambda fmt, layout: call("activation", (f32(1, 11008), f32(1, 11008)), kind="swiglu"))
