"""Qwen2: llama with biases on the q, k and v projections and NEOX rope."""

from __future__ import annotations

from rocmforge_core.hookspecs import hookimpl
from rocmforge_core.models.llama import Llama


class Qwen2(Llama):
    name = "qwen2"
    rope_mode = "neox"
    layer_tensors = Llama.layer_tensors + tuple(f"blk.{{i}}.attn_{p}.bias" for p in "qkv")

    def project(self, f, h, name):
        return f.bias(f.matmul(h, name), name)


@hookimpl
def register_architectures(register):
    register(Qwen2())
