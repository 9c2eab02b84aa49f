"""Gemma 3: llama's skeleton with sliding-window and global layers, per-head q/k norms, post-attention and
post-FFN norms, a GELU(tanh) gated FFN, embeddings scaled by sqrt(d_model) and the output tied to the embedding.

What the released files' metadata does not state is taken from llama.cpp: every 6th layer ((i + 1) % 6 == 0) is
global (rope base ``gemma3.rope.freq_base``, 1e6 on the released models, and the file's rope scaling), the others
attend to a sliding window of ``gemma3.attention.sliding_window`` tokens with rope base 1e4, unscaled. Files that
state ``gemma3.attention.sliding_window_pattern`` (a period, or one is-sliding flag per layer) or
``gemma3.rope.freq_base_swa`` override those. The stored norm weights already include Gemma's +1.
"""

from __future__ import annotations

import math

from rocmforge_core.hookspecs import hookimpl
from rocmforge_core.models.llama import Llama, per_head_qk_norm

LOCAL_ROPE_BASE = 10000.0
GLOBAL_EVERY = 6


class Gemma3(Llama):
    name = "gemma3"
    rope_mode = "neox"
    ffn_kind = "geglu_tanh"
    layer_tensors = Llama.layer_tensors + tuple(f"blk.{{i}}.{t}.weight" for t in (
        "attn_q_norm", "attn_k_norm", "post_attention_norm", "post_ffw_norm"))
    optional_tensors = ("output.weight",)

    def embed(self, f):
        return f.scale("token_embd.scale", super().embed(f), math.sqrt(f.config.d_model))

    def block(self, f, i, x):
        c, b = f.config, f"blk.{i}"
        h = f.rmsnorm(x, f"{b}.attn_norm", eps=c.rms_eps)
        h = f.rmsnorm(f.matmul(self.attention(f, i, h), f"{b}.attn_output"), f"{b}.post_attention_norm", eps=c.rms_eps)
        x = f.add(f"{b}.attn_residual", x, h)
        h = f.rmsnorm(x, f"{b}.ffn_norm", eps=c.rms_eps)
        h = f.rmsnorm(self.ffn(f, i, h), f"{b}.post_ffw_norm", eps=c.rms_eps)
        return f.add(f"{b}.ffn_residual", x, h)

    def qk_norm(self, f, b, q, k):
        return per_head_qk_norm(f, b, q, k)

    @staticmethod
    def is_global(c, i: int) -> bool:
        pattern = c.extra.get("attention.sliding_window_pattern", GLOBAL_EVERY)
        if isinstance(pattern, (list, tuple)):
            return not pattern[i]
        return pattern != 0 and (i + 1) % pattern == 0  # llama.cpp: period 0 means every layer slides

    def rope(self, f, i) -> dict:
        c = f.config
        if self.is_global(c, i):
            return dict(base=c.rope_base, mode=self.rope_mode, n_rot=c.rope_dim, freq_scale=c.rope_freq_scale)
        base = float(c.extra.get("rope.freq_base_swa", LOCAL_ROPE_BASE))
        return dict(base=base, mode=self.rope_mode, n_rot=c.rope_dim)

    def attention_scale(self, c) -> float:
        # query_pre_attn_scalar: key_length, except Gemma 3 27B (62 layers) whose is d_model / n_heads; the file
        # does not say, so llama.cpp tells the 27B by its layer count, as here
        return 1.0 / math.sqrt(c.d_model / c.n_heads if c.n_layers == 62 else c.head_dim)

    def window(self, c, i) -> int:
        return 0 if self.is_global(c, i) else c.sliding_window


@hookimpl
def register_architectures(register):
    register(Gemma3())
