"""An independent numpy implementation of llama, qwen2, qwen3 and gemma3, written from the published Hugging Face
modeling code (LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Gemma3ForCausalLM), in float64.

It shares nothing with rocmforge's model code: it works on HF-layout weights (it undoes llama.cpp's q/k row
permutation for llama, as convert_hf_to_gguf.py applies it), uses HF's rotate_half rope, repeat_kv, an explicit
causal (and sliding-window) mask and plain softmax attention over the whole sequence, without a KV cache.
"""

from __future__ import annotations

import numpy as np


def rms(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def unpermute(w, n_head):
    """Inverse of convert_hf_to_gguf.py's LlamaModel.permute (rows of q/k for ggml's interleaved rope)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rope(x, positions, base, factors=None):
    d = x.shape[-1]
    inv_freq = 1.0 / (base ** (np.arange(0, d, 2, dtype=np.float64) / d))
    if factors is not None:  # llama 3 style: frequencies divided by per-dimension factors
        inv_freq = inv_freq / factors
    freqs = np.outer(positions, inv_freq)
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]
    return x * cos + rotate_half(x) * sin


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def logits(arch, w, c, ids):
    """Logits f64[len(ids), vocab] of ``ids`` at positions 0.. for a model with weights ``w`` (GGUF names)."""
    return hidden(arch, w, c, ids) @ w.get("output.weight", w["token_embd.weight"]).astype(np.float64).T


def hidden(arch, w, c, ids):
    """The final hidden states f64[len(ids), d_model] (after the output norm) of ``ids`` at positions 0.."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    t = len(ids)
    pos = np.arange(t)
    hq, hkv, d = c.n_heads, c.n_kv_heads, c.head_dim
    x = w["token_embd.weight"][ids]
    if arch == "gemma3":
        x = x * np.sqrt(c.d_model)
    for i in range(c.n_layers):
        p = lambda n: w[f"blk.{i}.{n}"]  # noqa: E731
        h = rms(x, p("attn_norm.weight"), c.rms_eps)
        wq, wk = p("attn_q.weight"), p("attn_k.weight")
        if arch == "llama":
            wq, wk = unpermute(wq, hq), unpermute(wk, hkv)
        q, k, v = h @ wq.T, h @ wk.T, h @ p("attn_v.weight").T
        if arch == "qwen2":
            q, k, v = q + p("attn_q.bias"), k + p("attn_k.bias"), v + p("attn_v.bias")
        q, k, v = q.reshape(t, hq, d), k.reshape(t, hkv, d), v.reshape(t, hkv, d)
        if arch in ("qwen3", "gemma3"):
            q, k = rms(q, p("attn_q_norm.weight"), c.rms_eps), rms(k, p("attn_k_norm.weight"), c.rms_eps)
        base, window = c.rope_base, 0
        if arch == "gemma3" and (i + 1) % 6:  # sliding layers: local rope base, windowed mask
            base, window = 10000.0, c.sliding_window
        factors = w.get("rope_freqs.weight")
        q, k = apply_rope(q, pos, base, factors), apply_rope(k, pos, base, factors)
        k, v = np.repeat(k, hq // hkv, axis=1), np.repeat(v, hq // hkv, axis=1)  # repeat_kv
        scores = np.einsum("thd,shd->hts", q, k) / np.sqrt(d)
        dist = pos[:, None] - pos[None, :]
        mask = (dist < 0) | ((dist >= window) if window else False)
        scores = np.where(mask[None], -np.inf, scores)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", probs, v).reshape(t, hq * d) @ p("attn_output.weight").T
        if arch == "gemma3":
            o = rms(o, p("post_attention_norm.weight"), c.rms_eps)
        x = x + o
        h = rms(x, p("ffn_norm.weight"), c.rms_eps)
        act = gelu_tanh if arch == "gemma3" else silu
        f = (act(h @ p("ffn_gate.weight").T) * (h @ p("ffn_up.weight").T)) @ p("ffn_down.weight").T
        if arch == "gemma3":
            f = rms(f, p("post_ffw_norm.weight"), c.rms_eps)
        x = x + f
    return rms(x, w["output_norm.weight"], c.rms_eps)
