"""Partial offload: which whole layers go to the GPU backend, as llama.cpp's -ngl does.

``gpu_layers: N`` offloads the last N layers (llama.cpp counts from the end, so the GPU part is contiguous with
the output head) and the head itself (output norm, output matmul, sampler: every site after the last layer) when
N > 0. Sites before the first layer (token embedding) follow layer 0, so a full offload runs on the GPU alone
and a partial one has a single crossing per step. ``gpu_memory`` offloads the head first, then layers from the
last one down while their weights and KV cache (``context`` tokens) fit in the budget; the embedding table goes
along only when layer 0 went and it fits too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rocmforge_core import ops
from rocmforge_core.program import Site


@dataclass(frozen=True)
class Split:
    gpu_layers: frozenset[int]
    head: bool      # sites after the last layer
    front: bool     # sites before the first layer
    n_layers: int
    gpu_bytes: int  # weights (and KV cache for gpu_memory) placed on the GPU

    def on_gpu(self, index: int, site: Site, first: int, last: int) -> bool:
        layer = site.layer
        if layer is not None:
            return layer in self.gpu_layers
        return self.front if index < first else self.head if index > last else False

    def describe(self) -> str:
        if not self.gpu_layers:
            return f"0 of {self.n_layers} layers on the GPU"
        lo, hi = min(self.gpu_layers), max(self.gpu_layers)
        extra = [part for part, on in (("embedding", self.front), ("output head", self.head)) if on]
        return f"layers {lo}-{hi} ({len(self.gpu_layers)} of {self.n_layers})" + \
               (f" and {' and '.join(extra)}" if extra else "") + " on the GPU"


def layer_span(sites: list[Site]) -> tuple[int, int]:
    """Indices of the first and last site inside a layer."""
    inside = [i for i, s in enumerate(sites) if s.layer is not None]
    return (inside[0], inside[-1]) if inside else (len(sites), -1)


def split_layers(sites: list[Site], gpu_layers: int | None = None, gpu_memory: int | None = None,
                 context: int = 4096) -> Split:
    n_layers = 1 + max((s.layer for s in sites if s.layer is not None), default=-1)
    first, last = layer_span(sites)
    per_layer = [0] * n_layers
    counted: set[str] = set()

    def weight_bytes(group) -> int:
        total = 0
        for s in group:
            if s.weight and s.weight not in counted:
                total += s.weight_bytes
        return total

    for layer in range(n_layers):
        group = [s for s in sites if s.layer == layer]
        per_layer[layer] = weight_bytes(group) + kv_bytes(group, context)
        counted |= {s.weight for s in group}
    head = [s for i, s in enumerate(sites) if s.layer is None and i > last]
    front = [s for i, s in enumerate(sites) if s.layer is None and i < first]
    head_bytes, front_bytes = weight_bytes(head), weight_bytes(front)
    if gpu_layers is not None:
        n = min(gpu_layers, n_layers)
        layers = frozenset(range(n_layers - n, n_layers))
        on_head, on_front = n > 0, n >= n_layers and n_layers > 0
        total = sum(per_layer[i] for i in layers) + head_bytes * on_head + front_bytes * on_front
        return Split(layers, on_head, on_front, n_layers, total)
    budget = gpu_memory or 0
    used, layers = 0, []
    on_head = head_bytes <= budget
    if on_head:
        used = head_bytes
        for layer in range(n_layers - 1, -1, -1):
            if used + per_layer[layer] > budget:
                break
            used += per_layer[layer]
            layers.append(layer)
    on_front = 0 in layers and used + front_bytes <= budget
    return Split(frozenset(layers), on_head, on_front, n_layers, used + front_bytes * on_front)


def kv_bytes(group: list[Site], context: int) -> int:
    """State (KV cache) bytes of a layer for ``context`` tokens, f32: each state argument's per-position size
    (its shape past the block and slot dimensions) of the layer's sites whose op has state."""
    total = 0
    for s in group:
        for i in ops.spec(s.op).state:
            total += context * 4 * int(np.prod(s.sig.args[i].shape[2:]))
    return total
