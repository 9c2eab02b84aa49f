"""Random-weight GGUF files of real model shapes, for `rocmforge bench --synthetic` and the side-by-side scripts:
the architecture's own metadata keys and tensor names, so that llama.cpp loads the same file, and weights that are
valid random blocks of each format (a kernel's speed does not depend on the values).

Each full-size shape has a ``-tiny`` twin with every architectural feature (untied output, llama 3 rope factors,
qkv biases, q/k norms, a head size other than d_model / n_heads, sliding-window and global layers) at a few
layers and small dimensions, for correctness checks. Dimensions are multiples of 256, so every format fits.

Files are written tensor by tensor (the tensor table first, then each tensor's data as it is made), so memory
holds a few tensors at a time, never the file."""

from __future__ import annotations

import dataclasses
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rocmforge_core.errors import RocmforgeError


class ShapeError(RocmforgeError):
    """A synthetic shape or vocabulary that cannot be written."""


@dataclass(frozen=True)
class Shape:
    arch: str  # llama, qwen2 (q/k/v biases), qwen3 (q/k norms), gemma3 (q/k norms, post norms, sliding window)
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    vocab: int
    head_dim: int = 0  # 0: d_model // n_heads
    rope_base: float = 500000.0
    rms_eps: float = 1e-5
    context: int = 131072
    tied_output: bool = True  # no output.weight: the token embedding projects the logits
    llama3_rope: float = 0.0  # Llama 3.1's rope scaling factor, stored as the rope_freqs.weight tensor
    rope_linear: float = 0.0  # linear rope scaling of the global layers (Gemma 3 4B: 8)
    sliding_window: int = 0  # gemma3: every layer but each 6th attends to this many tokens

    @property
    def head_size(self) -> int:
        return self.head_dim or self.d_model // self.n_heads


SHAPES = {
    "llama-1b": Shape("llama", 16, 2048, 32, 8, 8192, 128256),  # Llama-3.2-1B
    "llama-8b": Shape("llama", 32, 4096, 32, 8, 14336, 128256, tied_output=False, llama3_rope=8.0),  # Llama-3.1-8B
    "qwen2-7b": Shape("qwen2", 28, 3584, 28, 4, 18944, 152064, rope_base=1e6, rms_eps=1e-6, context=32768,
                      tied_output=False),  # Qwen2.5-7B
    "qwen3-8b": Shape("qwen3", 36, 4096, 32, 8, 12288, 151936, head_dim=128, rope_base=1e6, rms_eps=1e-6,
                      context=40960, tied_output=False),  # Qwen3-8B
    "gemma3-4b": Shape("gemma3", 34, 2560, 8, 4, 10240, 262144, head_dim=256, rope_base=1e6, rms_eps=1e-6,
                       rope_linear=8.0, sliding_window=1024),  # Gemma-3-4B
    "llama-tiny": Shape("llama", 2, 256, 4, 2, 512, 1000, context=2048, tied_output=False, llama3_rope=8.0),
    "qwen2-tiny": Shape("qwen2", 2, 256, 4, 2, 512, 1000, rope_base=1e6, rms_eps=1e-6, context=2048,
                        tied_output=False),
    "qwen3-tiny": Shape("qwen3", 2, 256, 4, 2, 512, 1000, head_dim=128, rope_base=1e6, rms_eps=1e-6, context=2048,
                        tied_output=False),
    # 6 layers: five sliding-window layers and a global one; a window shorter than the tests' prompts
    "gemma3-tiny": Shape("gemma3", 6, 256, 4, 2, 512, 1000, head_dim=128, rope_base=1e6, rms_eps=1e-6,
                         context=2048, rope_linear=8.0, sliding_window=8),
}
# llama.cpp's mixes: TYPE -> (most matrices, attn_v/ffn_down on "more bits" layers, the output projection: the
# token embedding when tied, else output.weight, the embedding then taking the first type)
MIXES = {"Q4_0": ("Q4_0", "Q4_0", "Q4_0"), "Q4_K_M": ("Q4_K", "Q6_K", "Q6_K"), "Q4_K": ("Q4_K", "Q4_K", "Q4_K"),
         "Q8_0": ("Q8_0", "Q8_0", "Q8_0"), "Q6_K": ("Q6_K", "Q6_K", "Q6_K"), "F16": ("F16", "F16", "F16"),
         "Q5_K_M": ("Q5_K", "Q6_K", "Q6_K"), "Q4_1": ("Q4_1", "Q4_1", "Q4_1"), "Q5_0": ("Q5_0", "Q5_0", "Q5_0")}
# general.file_type of each mix (llama.cpp's llama_ftype, which llama-bench's model column names)
FILE_TYPES = {"F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q4_K": 14, "Q4_K_M": 15, "Q5_K_M": 17,
              "Q6_K": 18}
CHUNK_BYTES = 64 << 20  # a tensor's values are made this many bytes at a time
WRITER_THREADS = 8


def parse_spec(spec: str) -> tuple[str, Shape, str]:
    shape_name, _, qtype = spec.partition(":")
    if shape_name not in SHAPES or qtype.upper() not in MIXES:
        raise ShapeError(f"a synthetic model is SHAPE:TYPE with SHAPE in {', '.join(SHAPES)} and TYPE in "
                         f"{', '.join(MIXES)}, got {spec!r}")
    return shape_name, SHAPES[shape_name], qtype.upper()


def tensor_plan(s: Shape, qtype: str) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, numpy shape, GGUF type) of every tensor, in file order: llama.cpp's names for the architecture."""
    main, more_bits, output = MIXES[qtype]
    q, kv, hd = s.n_heads * s.head_size, s.n_kv_heads * s.head_size, s.head_size

    def more(i: int) -> bool:  # llama.cpp's use_more_bits
        n = s.n_layers
        return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2

    plan = [("token_embd.weight", (s.vocab, s.d_model), output if s.tied_output else main),
            ("output_norm.weight", (s.d_model,), "F32")]
    if not s.tied_output:
        plan.append(("output.weight", (s.vocab, s.d_model), output))
    if s.llama3_rope:
        plan.append(("rope_freqs.weight", (hd // 2,), "F32"))
    for i in range(s.n_layers):
        b, v_type = f"blk.{i}", more_bits if more(i) else main
        plan += [(f"{b}.attn_norm.weight", (s.d_model,), "F32"), (f"{b}.ffn_norm.weight", (s.d_model,), "F32"),
                 (f"{b}.attn_q.weight", (q, s.d_model), main), (f"{b}.attn_k.weight", (kv, s.d_model), main),
                 (f"{b}.attn_v.weight", (kv, s.d_model), v_type), (f"{b}.attn_output.weight", (s.d_model, q), main),
                 (f"{b}.ffn_gate.weight", (s.d_ff, s.d_model), main), (f"{b}.ffn_up.weight", (s.d_ff, s.d_model), main),
                 (f"{b}.ffn_down.weight", (s.d_model, s.d_ff), v_type)]
        if s.arch == "qwen2":
            plan += [(f"{b}.attn_{p}.bias", (n,), "F32") for p, n in (("q", q), ("k", kv), ("v", kv))]
        if s.arch in ("qwen3", "gemma3"):
            plan += [(f"{b}.attn_q_norm.weight", (hd,), "F32"), (f"{b}.attn_k_norm.weight", (hd,), "F32")]
        if s.arch == "gemma3":
            plan += [(f"{b}.post_attention_norm.weight", (s.d_model,), "F32"),
                     (f"{b}.post_ffw_norm.weight", (s.d_model,), "F32")]
    return plan


def llama3_rope_factors(s: Shape) -> np.ndarray:
    """Llama 3.1's per-frequency divisors (low_freq_factor 1, high_freq_factor 4, 8192 original positions), as
    llama.cpp's converter stores them in rope_freqs.weight."""
    factor, low, high, original = s.llama3_rope, 1.0, 4.0, 8192
    freqs = s.rope_base ** -(np.arange(0, s.head_size, 2, dtype=np.float64) / s.head_size)
    wavelen = 2 * math.pi / freqs
    smooth = (original / wavelen - low) / (high - low)
    out = np.where(wavelen < original / high, 1.0, np.where(wavelen > original / low, factor,
                                                            1.0 / ((1 - smooth) / factor + smooth)))
    return out.astype(np.float32)


def add_metadata(w, s: Shape, name: str) -> None:
    """The keys llama.cpp's loader reads for the architecture (src/llama-model.cpp, models/<arch>.cpp)."""
    w.add_name(name)
    w.add_block_count(s.n_layers)
    w.add_context_length(s.context)
    w.add_embedding_length(s.d_model)
    w.add_feed_forward_length(s.d_ff)
    w.add_head_count(s.n_heads)
    w.add_head_count_kv(s.n_kv_heads)
    w.add_rope_freq_base(s.rope_base)
    w.add_layer_norm_rms_eps(s.rms_eps)
    w.add_vocab_size(s.vocab)
    if s.arch == "llama":
        w.add_rope_dimension_count(s.head_size)
    if s.arch in ("qwen3", "gemma3"):  # as their converters write them
        w.add_key_length(s.head_size)
        w.add_value_length(s.head_size)
    if s.rope_linear:
        import gguf
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(s.rope_linear)
    if s.sliding_window:
        w.add_sliding_window(s.sliding_window)


def fit_vocabulary(tokenizer: dict[str, tuple], vocab: int) -> tuple[dict[str, tuple], int]:
    """The copied tokenizer and the file's vocabulary size: the shape's when it has more tokens than the
    vocabulary file (the rest padded with unused tokens, as real vocabularies pad theirs), else the file's."""
    n = len(tokenizer["tokenizer.ggml.tokens"][0])
    if vocab <= n:
        return tokenizer, n
    pad = vocab - n
    out = dict(tokenizer)
    value, vtype, sub = out["tokenizer.ggml.tokens"]
    out["tokenizer.ggml.tokens"] = value + [f"<unused_pad_{i}>".encode() for i in range(pad)], vtype, sub
    per_token = {"tokenizer.ggml.token_type": 5, "tokenizer.ggml.scores": 0.0}  # 5: llama.cpp's UNUSED
    for key, fill in per_token.items():
        if key in out:
            value, vtype, sub = out[key]
            if len(value) != n:
                raise ShapeError(f"{key} has {len(value)} entries for {n} tokens")
            out[key] = value + [fill] * pad, vtype, sub
    return out, vocab


def write_synthetic(spec: str, out: Path, vocab_from: Path | None = None) -> Path:
    """A random-weight GGUF of shape:type, e.g. llama-8b:Q4_K_M, written to ``out``: a path ending in .gguf, or a
    directory (the file is then SHAPE-TYPE.gguf there). With ``vocab_from``, that GGUF's tokenizer is copied in
    (see fit_vocabulary for the vocabulary size)."""
    import gguf

    from rocmforge_core.registry import get_registry
    shape_name, s, qtype = parse_spec(spec)
    tokenizer = read_tokenizer(vocab_from) if vocab_from else {}
    if tokenizer:
        tokenizer, vocab = fit_vocabulary(tokenizer, s.vocab)
        s = dataclasses.replace(s, vocab=vocab)
    registry = get_registry()
    path = out if out.suffix == ".gguf" else out / f"{shape_name}-{qtype}.gguf"
    plan = tensor_plan(s, qtype)
    w = gguf.GGUFWriter(str(path), s.arch)
    add_metadata(w, s, f"synthetic {shape_name}:{qtype}")
    w.add_file_type(FILE_TYPES[qtype])
    for key, (value, vtype, sub_type) in tokenizer.items():
        w.add_key_value(key, value, vtype, sub_type)
    for name, shape, type_name in plan:
        fmt = registry.format(type_name)
        if len(shape) == 1:
            w.add_tensor_info(name, shape, np.dtype(np.float32), shape[0] * 4)
        else:
            row_bytes = fmt.row_bytes(shape[1])
            w.add_tensor_info(name, (shape[0], row_bytes), np.dtype(np.uint8), shape[0] * row_bytes,
                              raw_dtype=gguf.GGMLQuantizationType(fmt.ggml_type))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    # Tensors are made a few at a time on threads (numpy's generators and ufuncs release the GIL), each from a
    # seed of its own, so the file does not depend on the thread count; memory holds one tensor per thread.
    seeds = np.random.SeedSequence(0).spawn(len(plan))
    gain = norm_gain(s, plan, registry)
    threads = min(WRITER_THREADS, os.cpu_count() or 1)
    with ThreadPoolExecutor(threads) as pool:
        for start in range(0, len(plan), threads):
            window = [pool.submit(make_tensor, np.random.default_rng(seed), s, name, shape, registry.format(t),
                                  gain)
                      for seed, (name, shape, t) in zip(seeds[start:start + threads], plan[start:start + threads])]
            for future in window:
                w.write_tensor_data(future.result())
    w.close()
    return path


def norm_gain(s: Shape, plan: list[tuple[str, tuple[int, ...], str]], registry) -> float:
    """The scale of the norms ahead of a matrix (attn_norm, ffn_norm, output_norm): random blocks are not
    trained weights (their scales and, in K-quants, their minimums make rows of rms up to 0.65 with a mean of
    their own), and at unit norms a 32-layer stack grows activations past f16's range within a few layers, where
    the hip backend's f16 prefill products then (rightly) fail the engine's finite-values check. Scaled by the
    largest rms of the file's formats (to a power of two, exact in any float), each product after a norm gives
    values of about unit rms; trained-scale F16 files keep unit norms."""
    from rocmforge_core.formats import Weight, dequantize_weight
    rng, rms = np.random.default_rng(0), 0.0
    for type_name in sorted({t for _, shape, t in plan if len(shape) == 2}):
        fmt = registry.format(type_name)
        sample = make_tensor(rng, s, "sample", (16, s.d_model), fmt)
        values = dequantize_weight(Weight("sample", fmt, (16, s.d_model), sample))
        rms = max(rms, float(np.sqrt(np.mean(np.square(values, dtype=np.float64)))))
    return 2.0 ** round(-math.log2(rms * math.sqrt(s.d_model))) if rms else 1.0


NORMS_BEFORE_A_MATRIX = ("attn_norm.weight", "ffn_norm.weight", "output_norm.weight")


def make_tensor(rng: np.random.Generator, s: Shape, name: str, shape: tuple[int, ...], fmt,
                gain: float = 1.0) -> np.ndarray:
    if name == "rope_freqs.weight":
        return llama3_rope_factors(s)
    if len(shape) == 1:  # norms near 1, as trained ones are (times gain ahead of a matrix); biases small
        spread = rng.standard_normal(shape[0], dtype=np.float32)
        if name.endswith(".bias"):
            return 0.1 * spread
        return (1.0 + 0.1 * spread) * np.float32(gain if name.endswith(NORMS_BEFORE_A_MATRIX) else 1.0)
    rows, cols = shape
    row_bytes = fmt.row_bytes(cols)
    step = max(1, CHUNK_BYTES // max(row_bytes, cols * 4))
    if rows <= step and fmt.name not in ("F16", "BF16", "F32"):  # one piece: no copy
        return fmt.random_weight(rng, name, shape).data
    out = np.empty((rows, row_bytes), np.uint8)
    for r in range(0, rows, step):
        n = min(step, rows - r)
        if fmt.name in ("F16", "BF16", "F32"):  # values of a trained model's scale, so activations stay finite
            values = rng.standard_normal((n, cols), dtype=np.float32) / np.float32(math.sqrt(cols))
            out[r:r + n] = fmt.quantize(values).reshape(n, row_bytes)
        else:
            out[r:r + n] = fmt.random_weight(rng, name, (n, cols)).data
    return out


def read_tokenizer(path: Path) -> dict[str, tuple]:
    """Every tokenizer.* key of a GGUF: key -> (value, value type, element type), as GGUFWriter.add_key_value
    takes them (token strings as their exact bytes, numeric arrays as lists)."""
    import gguf

    from rocmforge_core.gguf import StringArray, open_gguf
    from rocmforge_core.gguf.reader import SCALAR_TYPES
    element_types = {dtype: gguf.GGUFValueType(t) for t, dtype in SCALAR_TYPES.items()}
    out = {}
    with open_gguf(path) as f:
        if not isinstance(f.metadata.get("tokenizer.ggml.tokens"), StringArray):
            raise ShapeError(f"{path.name}: no tokenizer.ggml.tokens array, so it holds no vocabulary to copy")
        for key, value in f.metadata.items():
            if not key.startswith("tokenizer."):
                continue
            vtype = gguf.GGUFValueType(f.value_types[key])
            if isinstance(value, StringArray):
                out[key] = value.tobytes_list(), vtype, gguf.GGUFValueType.STRING
            elif isinstance(value, np.ndarray):
                out[key] = value.tolist(), vtype, element_types[value.dtype]
            elif isinstance(value, list):
                raise ShapeError(f"{path.name}: {key} is an array of arrays, which no tokenizer key is")
            else:
                out[key] = value, vtype, None
    return out
