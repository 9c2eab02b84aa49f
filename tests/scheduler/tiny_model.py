"""A tiny llama GGUF (4 layers, random weights, mixed quant formats) written with gguf's own writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T, GGUFWriter
from gguf.quants import quantize

N_LAYERS, D, HEADS, KV_HEADS, HEAD_DIM, FF, VOCAB = 4, 64, 4, 2, 16, 128, 96


def write_tiny_llama(path: Path, *, seed: int = 0, down_type=T.Q8_0, down_layers=(2,)) -> Path:
    """ffn_down of ``down_layers`` is stored as ``down_type`` (the format a test's fake gpu refuses)."""
    rng = np.random.default_rng(seed)
    w = GGUFWriter(path, "llama")
    w.add_block_count(N_LAYERS)
    w.add_context_length(256)
    w.add_embedding_length(D)
    w.add_feed_forward_length(FF)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"t{i}" for i in range(VOCAB)])
    w.add_token_scores([0.0] * VOCAB)
    w.add_token_types([1] * VOCAB)

    def tensor(name, shape, qtype, scale=0.2):
        values = (rng.standard_normal(shape) * scale).astype(np.float32)
        if qtype == T.F32:
            w.add_tensor(name, values)
        elif qtype == T.F16:
            w.add_tensor(name, values.astype(np.float16))
        else:
            w.add_tensor(name, quantize(values, qtype), raw_dtype=qtype)

    tensor("token_embd.weight", (VOCAB, D), T.Q8_0, 1.0)
    tensor("output_norm.weight", (D,), T.F32, 1.0)
    tensor("output.weight", (VOCAB, D), T.F16)
    for i in range(N_LAYERS):
        b = f"blk.{i}"
        tensor(f"{b}.attn_norm.weight", (D,), T.F32, 1.0)
        tensor(f"{b}.attn_q.weight", (HEADS * HEAD_DIM, D), T.Q8_0)
        tensor(f"{b}.attn_k.weight", (KV_HEADS * HEAD_DIM, D), T.Q8_0)
        tensor(f"{b}.attn_v.weight", (KV_HEADS * HEAD_DIM, D), T.F16)
        tensor(f"{b}.attn_output.weight", (D, HEADS * HEAD_DIM), T.Q8_0)
        tensor(f"{b}.ffn_norm.weight", (D,), T.F32, 1.0)
        tensor(f"{b}.ffn_gate.weight", (FF, D), T.Q8_0)
        tensor(f"{b}.ffn_up.weight", (FF, D), T.Q4_0)
        tensor(f"{b}.ffn_down.weight", (D, FF), down_type if i in down_layers else T.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
