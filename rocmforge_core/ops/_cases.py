"""Random inputs shared by the op specs' conformance cases."""

from __future__ import annotations

import numpy as np


def normal(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def weights(rng: np.random.Generator, formats, rows: int, cols: int):
    """A weight of every registered format whose block size divides ``cols``."""
    for fmt in formats:
        if cols % fmt.block_size == 0:
            yield fmt, fmt.random_weight(rng, "w", (rows, cols))
