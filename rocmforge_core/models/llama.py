"""Llama (Llama 2/3, Mistral, SmolLM2): pre-norm blocks of GQA attention with rope and a SwiGLU FFN.

Also the base of qwen2, qwen3 and gemma3, which override the parts they change."""

from __future__ import annotations

import math

from rocmforge_core.errors import UnsupportedError
from rocmforge_core.hookspecs import hookimpl
from rocmforge_core.models import Architecture


class Llama(Architecture):
    name = "llama"
    rope_mode = "normal"  # GGUF's llama q/k rows are permuted for ggml's interleaved rope
    ffn_kind = "swiglu"
    global_tensors = ("token_embd.weight", "output_norm.weight")
    layer_tensors = tuple(f"blk.{{i}}.{t}.weight" for t in (
        "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"))
    optional_tensors = ("output.weight", "rope_freqs.weight")

    def hidden(self, f):
        c = f.config
        scaling = c.extra.get("rope.scaling.type", "none")
        if scaling not in ("none", "linear"):
            raise UnsupportedError(f"{self.name}: rope scaling {scaling!r} is not supported (only linear)")
        x = self.embed(f)
        for i in range(c.n_layers):
            x = self.block(f, i, x)
        x = f.output_rows(x)
        return f.rmsnorm(x, "output_norm", eps=c.rms_eps)

    def head(self, f, x):
        return f.matmul(x, "output" if f.has("output.weight") else "token_embd", site="output")

    def embed(self, f):
        return f.embedding("token_embd", f.tokens)

    def block(self, f, i, x):
        c, b = f.config, f"blk.{i}"
        h = f.rmsnorm(x, f"{b}.attn_norm", eps=c.rms_eps)
        x = f.add(f"{b}.attn_residual", x, f.matmul(self.attention(f, i, h), f"{b}.attn_output"))
        h = f.rmsnorm(x, f"{b}.ffn_norm", eps=c.rms_eps)
        return f.add(f"{b}.ffn_residual", x, self.ffn(f, i, h))

    def attention(self, f, i, h):
        c, b, m = f.config, f"blk.{i}", f.m
        q = self.project(f, h, f"{b}.attn_q").reshape(m, c.n_heads, c.head_dim)
        k = self.project(f, h, f"{b}.attn_k").reshape(m, c.n_kv_heads, c.head_dim)
        v = self.project(f, h, f"{b}.attn_v").reshape(m, c.n_kv_heads, c.head_dim_v)
        q, k = self.qk_norm(f, b, q, k)
        rope = self.rope(f, i)
        q = f.rope(f"{b}.attn_q.rope", q, **rope)
        k = f.rope(f"{b}.attn_k.rope", k, **rope)
        o = f.attention(f"{b}.attn", q, k, v, layer=i, scale=self.attention_scale(c), window=self.window(c, i))
        return o.reshape(m, c.n_heads * c.head_dim_v)

    def project(self, f, h, name):
        return f.matmul(h, name)

    def qk_norm(self, f, b, q, k):
        return q, k

    def rope(self, f, i) -> dict:
        c = f.config
        factors = "rope_freqs.weight" if f.has("rope_freqs.weight") else None
        return dict(base=c.rope_base, mode=self.rope_mode, n_rot=c.rope_dim, freq_scale=c.rope_freq_scale,
                    freq_factors=factors)

    def attention_scale(self, c) -> float:
        return 1.0 / math.sqrt(c.head_dim)

    def window(self, c, i) -> int:
        return c.sliding_window

    def ffn(self, f, i, h):
        b = f"blk.{i}"
        gate, up = f.matmul(h, f"{b}.ffn_gate"), f.matmul(h, f"{b}.ffn_up")
        return f.matmul(f.activation(f"{b}.ffn_act", gate, up, kind=self.ffn_kind), f"{b}.ffn_down")


def per_head_qk_norm(f, b: str, q, k):
    """RMS norm over each head of q and k (tensors ``attn_q_norm``, ``attn_k_norm``): qwen3 and gemma3."""
    def norm(x, name):
        m, heads, d = x.shape
        return f.rmsnorm(x.reshape(m * heads, d), name, eps=f.config.rms_eps).reshape(m, heads, d)
    return norm(q, f"{b}.attn_q_norm"), norm(k, f"{b}.attn_k_norm")


@hookimpl
def register_architectures(register):
    register(Llama())
