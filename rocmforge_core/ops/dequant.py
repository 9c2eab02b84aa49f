"""dequant(w) -> f32 array of w's logical shape: the exact values of a quantized weight."""

from rocmforge_core.formats import dequantize_weight
from rocmforge_core.ops import Case, OpSpec, Tolerance
from rocmforge_core.ops._cases import call, weight_arg, weights


def reference(w):
    return dequantize_weight(w)


def _cases(rng, formats):
    for fmt, w in weights(rng, formats, 8, 512):
        yield Case((w,), label=fmt.name)


SPEC = OpSpec("dequant", 1, __doc__, Tolerance(nmse=0.0), _cases, weights=(0,),
              representative=lambda fmt, layout: None if fmt == "f32" else
              call("dequant", (weight_arg(fmt, layout, 4096, 4096),)))
