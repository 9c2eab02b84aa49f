"""Throughput of the numpy dequantizers (what the reference backend and host-side loading run), with gguf-py's
as the anchor. Figures: docs/PERF.md, "Format plugins: numpy dequantize"."""

from __future__ import annotations

import numpy as np
import pytest
from gguf.quants import dequantize as gguf_dequantize

from .helpers import FORMATS, gguf_type, load_registry

REGISTRY = load_registry()
SHAPE = (1024, 4096)


@pytest.mark.parametrize("impl", ["rocmforge", "gguf-py"])
@pytest.mark.parametrize("name", FORMATS)
def test_dequantize_throughput(benchmark, name, impl):
    fmt = REGISTRY.format(name)
    raw = np.asarray(fmt.random_weight(np.random.default_rng(0), "w", SHAPE).data)
    run = fmt.dequantize if impl == "rocmforge" else (lambda r: gguf_dequantize(r, gguf_type(name)))
    benchmark.group = name
    benchmark.extra_info["elements"] = SHAPE[0] * SHAPE[1]
    out = benchmark.pedantic(run, args=(raw,), rounds=3, iterations=1)
    assert np.shape(out) == SHAPE
