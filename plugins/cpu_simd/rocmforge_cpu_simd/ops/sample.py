"""sample: llama.cpp's chain per row, with top-k chosen by a linear-time partition instead of sorting the vocabulary.

With top_k > 0 only the k best candidates (ties broken by lower id, as the reference does) can survive the
chain, so the reference chain runs on those k in id order: same candidates, same order, same draw, at O(V)
instead of an O(V log V) sort of a 262k-entry vocabulary per token. Greedy is an argmax. The bias and mask are
applied first, by the reference's ``constrain`` (a copy of the row only when one of them acts)."""

from __future__ import annotations

import numpy as np

from rocmforge_core.ops import Kernel, no, yes
from rocmforge_core.ops.sample import apply_penalties, constrain, row_params, sample_row

_NO_PENALTY = dict(repeat_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0)


def top_k_ids(logits: np.ndarray, k: int) -> np.ndarray:
    """Ids of the k largest logits, ties at the threshold going to lower ids; in ascending id order."""
    kth = np.partition(logits, len(logits) - k)[len(logits) - k]
    above = np.flatnonzero(logits > kth)
    tied = np.flatnonzero(logits == kth)[: k - len(above)]
    return np.sort(np.concatenate([above, tied]))


def _row(logits, history, *, temperature, top_k, top_p, min_p, typical_p, repeat_penalty, presence_penalty,
         frequency_penalty, seed, step) -> int:
    logits = apply_penalties(np.asarray(logits, dtype=np.float32), history, repeat_penalty, presence_penalty,
                             frequency_penalty)
    if temperature <= 0:
        return int(np.argmax(logits))
    chain = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p, seed=seed,
                 step=step, **_NO_PENALTY)
    if not 0 < top_k < len(logits):
        return sample_row(logits, (), **chain)
    ids = top_k_ids(logits, top_k)
    return int(ids[sample_row(logits[ids], (), **chain)])


def sample(logits, history, params, controls, mask, bias_ids, bias_values, *, candidates):
    return np.array([_row(constrain(logits[r], mask[r], bias_ids[r], bias_values[r]), history[r],
                          **row_params(params, controls, r))
                     for r in range(logits.shape[0])], dtype=np.int32)


def _supports(sig):
    if sig.args[0].dtype != "f32" or len(sig.args[0].shape) != 2:
        return no("cpu sample takes f32 logits [rows, vocab]")
    return yes()


def kernels():
    return [Kernel("sample", "cpu", "cpu.sample", sample, _supports)]
