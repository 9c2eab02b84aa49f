"""TQ2_0 (GGUF type 35): ternary weights {-1, 0, 1} times one f16 scale per block of 256, 2 bits per weight.

ggml's block_tq2_0 is ``uint8 qs[64]; f16 d``: byte j of 32-byte group g holds elements g*128 + s*32 + j for the
four 2-bit fields s = 0..3 (lowest bits first); a field q means q - 1.
"""

import numpy as np

from rocmforge_core.formats import QuantFormat

BLOCK = 256
TYPE_SIZE = BLOCK // 4 + 2
_SHIFTS = np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)


def dequantize(raw: np.ndarray) -> np.ndarray:
    raw = np.asarray(raw, dtype=np.uint8)
    blocks = raw.reshape(-1, TYPE_SIZE)
    d = blocks[:, BLOCK // 4:].copy().view(np.float16).astype(np.float32)  # [n, 1]
    fields = (blocks[:, :BLOCK // 4].reshape(-1, 2, 1, 32) >> _SHIFTS) & 3  # [n, 2, 4, 32]
    values = d * (fields.reshape(-1, BLOCK).astype(np.float32) - 1.0)
    return values.reshape(*raw.shape[:-1], raw.shape[-1] // TYPE_SIZE * BLOCK)


def quantize(values: np.ndarray) -> np.ndarray:
    """ggml's quantize_row_tq2_0_ref: d = max |x|, q = roundf(x / d) + 1."""
    values = np.asarray(values, dtype=np.float32)
    blocks = values.reshape(-1, BLOCK)
    d = np.abs(blocks).max(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, 0, 1 / d)
    scaled = blocks * inv
    q = _roundf(scaled).astype(np.int8) + 1
    packed = (q.astype(np.uint8).reshape(-1, 2, 4, 32) << _SHIFTS).sum(axis=2, dtype=np.uint8).reshape(-1, BLOCK // 4)
    out = np.concatenate([packed, d.astype(np.float16).view(np.uint8)], axis=1)
    return out.reshape(*values.shape[:-1], values.shape[-1] // BLOCK * TYPE_SIZE)


def _roundf(x: np.ndarray) -> np.ndarray:
    """C's roundf (half away from zero) without the float error of floor(|x| + 0.5) just below one half."""
    a = np.abs(x)
    whole = np.floor(a)
    return np.sign(x) * (whole + np.floor(2 * (a - whole)))


def random_blocks(rng: np.random.Generator, n: int) -> np.ndarray:
    """Valid blocks: ternary fields (0, 1, 2) and a finite positive scale."""
    fields = rng.integers(0, 3, (n, 2, 4, 32), dtype=np.uint8)
    qs = (fields << _SHIFTS).sum(axis=2, dtype=np.uint8).reshape(n, BLOCK // 4)
    d = rng.uniform(1e-3, 1e-1, (n, 1)).astype(np.float16)
    return np.concatenate([qs, d.view(np.uint8)], axis=1)


TQ2_0 = QuantFormat("TQ2_0", ggml_type=35, block_size=BLOCK, type_size=TYPE_SIZE, dequantize=dequantize,
                    random_blocks=random_blocks, quantize=quantize)
