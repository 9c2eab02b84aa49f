"""A tiny llama GGUF (4 layers by default, random weights, mixed quant formats) written with gguf's own writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T, GGUFWriter
from gguf.quants import quantize


def write_tiny_llama(path: Path, *, seed: int = 0, down_type=T.Q8_0, down_layers=(2,), n_layers=4, d=64,
                     heads=4, kv_heads=2, head_dim=16, ff=128, vocab=96) -> Path:
    """ffn_down of ``down_layers`` is stored as ``down_type`` (the format a test's fake gpu refuses)."""
    rng = np.random.default_rng(seed)
    w = GGUFWriter(path, "llama")
    w.add_block_count(n_layers)
    w.add_context_length(256)
    w.add_embedding_length(d)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(head_dim)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"t{i}" for i in range(vocab)])
    w.add_token_scores([0.0] * vocab)
    w.add_token_types([1] * vocab)

    def tensor(name, shape, qtype, scale=0.2):
        values = (rng.standard_normal(shape) * scale).astype(np.float32)
        if qtype == T.F32:
            w.add_tensor(name, values)
        elif qtype == T.F16:
            w.add_tensor(name, values.astype(np.float16))
        else:
            w.add_tensor(name, quantize(values, qtype), raw_dtype=qtype)

    tensor("token_embd.weight", (vocab, d), T.Q8_0, 1.0)
    tensor("output_norm.weight", (d,), T.F32, 1.0)
    tensor("output.weight", (vocab, d), T.F16)
    for i in range(n_layers):
        b = f"blk.{i}"
        tensor(f"{b}.attn_norm.weight", (d,), T.F32, 1.0)
        tensor(f"{b}.attn_q.weight", (heads * head_dim, d), T.Q8_0)
        tensor(f"{b}.attn_k.weight", (kv_heads * head_dim, d), T.Q8_0)
        tensor(f"{b}.attn_v.weight", (kv_heads * head_dim, d), T.F16)
        tensor(f"{b}.attn_output.weight", (d, heads * head_dim), T.Q8_0)
        tensor(f"{b}.ffn_norm.weight", (d,), T.F32, 1.0)
        tensor(f"{b}.ffn_gate.weight", (ff, d), T.Q8_0)
        tensor(f"{b}.ffn_up.weight", (ff, d), T.Q4_0)
        tensor(f"{b}.ffn_down.weight", (d, ff), down_type if i in down_layers else T.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
