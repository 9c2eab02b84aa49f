"""Quantization formats and weights.

The core knows no format by name: every GGUF tensor type, F32 included, is a ``QuantFormat`` registered by a
format plugin. A format declares its block layout, a numpy reference ``dequantize`` (bit-exact with ggml), an
optional ``quantize``, device-code sources per backend, and optional repackers that give a backend its own
layout of the weights at load time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np


@dataclass
class QuantFormat:
    """One GGUF tensor type.

    dequantize(raw)    uint8 array (..., row_bytes) -> float32 (..., row_elements), exactly as ggml does
    quantize(values)   float32 (..., row_elements) -> uint8 (..., row_bytes), exactly as ggml does; None if
                       ggml defines no reference quantizer for the type
    random_blocks(rng, n) -> uint8 (n, type_size): valid random blocks (finite scales) for tests
    kernel_sources     backend name -> source file with this format's device code (see docs/PLUGINS.md)
    repackers          backend name -> fn(weight) -> Weight in that backend's layout (``layout`` names it)
    """
    name: str
    ggml_type: int
    block_size: int
    type_size: int
    dequantize: Callable[[np.ndarray], np.ndarray]
    random_blocks: Callable[[np.random.Generator, int], np.ndarray]
    quantize: Callable[[np.ndarray], np.ndarray] | None = None
    kernel_sources: dict[str, Path] = field(default_factory=dict)
    repackers: dict[str, Callable[["Weight"], "Weight"]] = field(default_factory=dict)
    plugin: str = ""  # filled in by the registry

    def row_bytes(self, n_elements: int) -> int:
        if n_elements % self.block_size:
            raise ValueError(f"{self.name} rows must be a multiple of {self.block_size} elements, got {n_elements}")
        return n_elements // self.block_size * self.type_size

    def random_weight(self, rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> "Weight":
        rows = int(np.prod(shape[:-1], dtype=np.int64))
        nb = shape[-1] // self.block_size
        raw = self.random_blocks(rng, rows * nb).reshape(*shape[:-1], nb * self.type_size)
        return Weight(name, self, tuple(shape), raw)


@dataclass
class Weight:
    """A model tensor as stored: ``shape`` is logical, numpy order (rows, cols), i.e. ggml's ne reversed.

    ``format`` is its QuantFormat, resolved once when the file is opened, so kernels decode it without asking the
    registry. ``data`` is backend storage: on the host, a uint8 array (rows, row_bytes) viewing the memory-mapped
    file, or whatever a backend's upload or repacker made of it, described by ``layout`` ('' = GGUF's own layout).
    """
    name: str
    format: QuantFormat
    shape: tuple[int, ...]
    data: Any
    layout: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def fmt(self) -> str:
        """The GGUF type name, as signatures carry it."""
        return self.format.name

    @property
    def dtype_name(self) -> str:
        return self.format.name

    def with_data(self, data: Any, layout: str, **meta: Any) -> "Weight":
        return replace(self, data=data, layout=layout, meta={**self.meta, **meta})


def dequantize_weight(weight: Weight | np.ndarray) -> np.ndarray:
    """Exact float32 values of a host weight (plain arrays pass through)."""
    if isinstance(weight, np.ndarray):
        return weight.astype(np.float32, copy=False)
    if weight.layout == "f32":
        return weight.data
    if weight.layout:
        raise ValueError(f"{weight.name}: cannot dequantize the backend layout {weight.layout!r} on the host")
    return weight.format.dequantize(np.asarray(weight.data)).reshape(weight.shape)
