"""Random inputs shared by the op specs' conformance cases."""

from __future__ import annotations

import numpy as np


def normal(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def f32(*shape: int):
    from rocmforge_core.ops import ArgInfo
    return ArgInfo(tuple(shape), "f32")


def i32(*shape: int):
    from rocmforge_core.ops import ArgInfo
    return ArgInfo(tuple(shape), "i32")


def call(op: str, args: tuple, **params):
    from rocmforge_core.ops import Signature
    return Signature(op, tuple(args), tuple(sorted(params.items())))


def weight_arg(fmt: str, layout: str, rows: int, cols: int):
    """A representative call's weight: GGUF type ``fmt`` in ``layout``, or a plain f32 array for 'f32'."""
    from rocmforge_core.ops import ArgInfo
    return ArgInfo((rows, cols), fmt, layout) if fmt != "f32" else ArgInfo((rows, cols), "f32")


def weights(rng: np.random.Generator, formats, rows: int, cols: int):
    """A weight of every registered format whose block size divides ``cols``."""
    for fmt in formats:
        if cols % fmt.block_size == 0:
            yield fmt, fmt.random_weight(rng, "w", (rows, cols))
