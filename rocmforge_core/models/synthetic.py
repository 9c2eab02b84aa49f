"""Tiny models with random weights, written as GGUF files with gguf-py's writer, for tests of every area
(engine, backends, scheduler, server) that need a real model file without a download.

``write_model(path, "qwen3", ...)`` returns the float32 values of every tensor it wrote (after rounding to the
stored type), keyed by GGUF tensor name, so an independent implementation can compute the expected logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rocmforge_core.errors import UnsupportedError

ARCHES = ("llama", "qwen2", "qwen3", "gemma3")


@dataclass
class TinyConfig:
    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    n_kv_heads: int = 2
    head_dim: int = 16
    d_ff: int = 96
    vocab_size: int = 128
    context_length: int = 256
    rms_eps: float = 1e-6
    rope_base: float = 10000.0
    sliding_window: int = 0    # gemma3
    tied_output: bool = True
    rope_freqs: bool = False    # llama 3 style per-dimension frequency factors
    dtype: str = "F32"          # stored type of the matrices: F32, F16, or a type whose format can quantize (Q8_0,
                                # Q4_0, ...: the token embedding too); norms and biases stay F32
    extra: dict = field(default_factory=dict)  # more metadata, keys without the "<arch>." prefix


def write_model(path: str | Path, arch: str, config: TinyConfig | None = None, seed: int = 0,
                omit: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Write a random ``arch`` model to ``path`` (leaving out the tensors named in ``omit``)."""
    import gguf  # a test dependency; the engine never writes GGUF files

    if arch not in ARCHES:
        raise UnsupportedError(f"no synthetic model for architecture {arch!r}; choose one of {', '.join(ARCHES)}")
    c = config or TinyConfig()
    rng = np.random.default_rng(seed)
    tensors = _tensors(arch, c, rng)

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(f"tiny-{arch}")
    writer.add_block_count(c.n_layers)
    writer.add_context_length(c.context_length)
    writer.add_embedding_length(c.d_model)
    writer.add_feed_forward_length(c.d_ff)
    writer.add_head_count(c.n_heads)
    writer.add_head_count_kv(c.n_kv_heads)
    writer.add_key_length(c.head_dim)
    writer.add_value_length(c.head_dim)
    writer.add_layer_norm_rms_eps(c.rms_eps)
    writer.add_rope_freq_base(c.rope_base)
    writer.add_vocab_size(c.vocab_size)
    if c.sliding_window:
        writer.add_sliding_window(c.sliding_window)
    for key, value in c.extra.items():
        _add(writer, f"{arch}.{key}", value)
    stored = {}
    quantized = c.dtype not in ("F32", "F16")
    if quantized:
        from rocmforge_core.registry import get_registry
        fmt = get_registry().format(c.dtype)
    for name, value in tensors.items():
        if name in omit:
            continue
        if quantized and value.ndim == 2:
            raw = fmt.quantize(value)
            writer.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=gguf.GGMLQuantizationType(fmt.ggml_type))
            stored[name] = fmt.dequantize(raw).reshape(value.shape)
            continue
        if c.dtype == "F16" and value.ndim == 2:
            value = value.astype(np.float16)
        writer.add_tensor(name, value)
        stored[name] = value.astype(np.float32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return stored


def _add(writer, key: str, value) -> None:
    if isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_uint32(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, str):
        writer.add_string(key, value)
    else:
        writer.add_array(key, list(value))


def _tensors(arch: str, c: TinyConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    def mat(rows, cols):
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def norm(n):  # near 1, as trained norm weights are
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    q, kv = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    t = {"token_embd.weight": rng.standard_normal((c.vocab_size, c.d_model)).astype(np.float32),
         "output_norm.weight": norm(c.d_model)}
    if not c.tied_output:
        t["output.weight"] = mat(c.vocab_size, c.d_model)
    if c.rope_freqs:
        t["rope_freqs.weight"] = np.linspace(1.0, 8.0, c.head_dim // 2).astype(np.float32)
    for i in range(c.n_layers):
        b = f"blk.{i}"
        t.update({f"{b}.attn_norm.weight": norm(c.d_model), f"{b}.attn_q.weight": mat(q, c.d_model),
                  f"{b}.attn_k.weight": mat(kv, c.d_model), f"{b}.attn_v.weight": mat(kv, c.d_model),
                  f"{b}.attn_output.weight": mat(c.d_model, q), f"{b}.ffn_norm.weight": norm(c.d_model),
                  f"{b}.ffn_gate.weight": mat(c.d_ff, c.d_model), f"{b}.ffn_up.weight": mat(c.d_ff, c.d_model),
                  f"{b}.ffn_down.weight": mat(c.d_model, c.d_ff)})
        if arch == "qwen2":
            for p, n in (("q", q), ("k", kv), ("v", kv)):
                t[f"{b}.attn_{p}.bias"] = (0.1 * rng.standard_normal(n)).astype(np.float32)
        if arch in ("qwen3", "gemma3"):
            t[f"{b}.attn_q_norm.weight"] = norm(c.head_dim)
            t[f"{b}.attn_k_norm.weight"] = norm(c.head_dim)
        if arch == "gemma3":
            t[f"{b}.post_attention_norm.weight"] = norm(c.d_model)
            t[f"{b}.post_ffw_norm.weight"] = norm(c.d_model)
    return t
