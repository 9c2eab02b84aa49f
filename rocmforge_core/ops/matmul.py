"""matmul(x, w) -> f32[m, n] = x @ w.T, with x f32[m, k] and w a weight [n, k] of any format (ggml's mul_mat).

m = 1 is a decode matrix-vector product; m > 1 a prefill batch. Kernels that quantize x to 8 bits (as ggml's
CPU and CUDA backends do) are held to the looser tolerance of the cases labelled for it."""

import numpy as np

from rocmforge_core.formats import dequantize_weight
from rocmforge_core.ops import Case, OpSpec, Tolerance, itemsize
from rocmforge_core.ops._cases import call, f32, normal, weight_arg, weights

QUANTIZED_ACTIVATIONS = Tolerance(nmse=5e-4)


def reference(x, w):
    return (np.asarray(x, dtype=np.float32) @ dequantize_weight(w).T).astype(np.float32)


def _cases(rng, formats):
    for m in (1, 7, 64):
        for fmt, w in weights(rng, formats, 96, 512):
            quantized = fmt.name not in ("F32", "F16", "BF16")
            yield Case((normal(rng, m, 512), w), tolerance=QUANTIZED_ACTIVATIONS if quantized else None,
                       label=f"{fmt.name} m={m}")
    yield Case((normal(rng, 5, 48), normal(rng, 33, 48)), label="f32 array")


def _work(sig, formats):
    (m, k), n = sig.args[0].shape, sig.args[1].shape[0]
    return 2.0 * m * n * k, sum(float(np.prod(a.shape)) * itemsize(a.dtype, formats) for a in sig.args)


SPEC = OpSpec("matmul", 1, __doc__, Tolerance(nmse=1e-7), _cases, weights=(1,), work=_work,
              out_shape=lambda args, params: ((args[0].shape[0], args[1].shape[0]), "f32"),
              representative=lambda fmt, layout: call("matmul", (f32(1, 4096), weight_arg(fmt, layout, 4096, 4096))))
