"""Qwen3: llama with per-head RMS norms on q and k (before rope) and NEOX rope; no projection biases."""

from __future__ import annotations

from rocmforge_core.hookspecs import hookimpl
from rocmforge_core.models.llama import Llama, per_head_rmsnorm


class Qwen3(Llama):
    name = "qwen3"
    rope_mode = "neox"
    layer_tensors = Llama.layer_tensors + ("blk.{i}.attn_q_norm.weight", "blk.{i}.attn_k_norm.weight")

    def qk_norm(self, f, b, q, k):
        eps = f.config.rms_eps
        return per_head_rmsnorm(f, q, f"{b}.attn_q_norm", eps), per_head_rmsnorm(f, k, f"{b}.attn_k_norm", eps)


@hookimpl
def register_architectures(register):
    register(Qwen3())
