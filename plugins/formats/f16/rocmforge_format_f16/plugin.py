"""F16 (GGUF type 1): IEEE half precision, widened exactly to float32."""

import numpy as np

from rocmforge_core import blocks as B
from rocmforge_core.hookspecs import hookimpl


def dequantize_blocks(b: np.ndarray) -> np.ndarray:
    return b.view(np.float16).astype(np.float32)


def random_blocks(rng: np.random.Generator, n: int) -> np.ndarray:
    return B.f16_bytes(rng.standard_normal((n, 1), dtype=np.float32))


@hookimpl
def register_formats(register):
    register(B.block_format(__file__, "F16", 1, 1, 2, dequantize_blocks, random_blocks, B.f16_bytes))
