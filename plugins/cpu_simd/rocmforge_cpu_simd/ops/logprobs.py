"""logprobs: the reference's log-softmax with the top ids found by a linear-time partition instead of sorting the
vocabulary (the same ids: ties at the threshold go to the lower ids, as the reference's order does)."""

from __future__ import annotations

import numpy as np

from rocmforge_core.ops import Kernel
from rocmforge_core.ops.logprobs import supported
from rocmforge_cpu_simd.ops.sample import top_k_ids


def logprobs(logits, tokens, *, top):
    n, vocab = logits.shape
    out = np.empty((n, 1 + 2 * top), dtype=np.float32)
    for r in range(n):
        row = logits[r]
        x = row.astype(np.float64)
        m = x.max()
        lse = m + np.log(np.sum(np.exp(x - m)))
        ids = top_k_ids(row, top)
        ids = ids[np.lexsort((ids, -row[ids]))]  # logit descending, then id ascending
        out[r, 0] = x[int(tokens[r])] - lse
        out[r, 1:1 + top] = ids
        out[r, 1 + top:] = x[ids] - lse
    return out


def kernels():
    return [Kernel("logprobs", "cpu", "cpu.logprobs", logprobs, lambda sig: supported(sig, "cpu"))]
