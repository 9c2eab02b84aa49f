"""Qwen3: llama with per-head RMS norms on q and k (before rope) and NEOX rope; no projection biases."""

from __future__ import annotations

from rocmforge_core.hookspecs import hookimpl
from rocmforge_core.models.llama import Llama, per_head_qk_norm


class Qwen3(Llama):
    name = "qwen3"
    rope_mode = "neox"
    layer_tensors = Llama.layer_tensors + ("blk.{i}.attn_q_norm.weight", "blk.{i}.attn_k_norm.weight")

    def qk_norm(self, f, b, q, k):
        return per_head_qk_norm(f, b, q, k)


@hookimpl
def register_architectures(register):
    register(Qwen3())
