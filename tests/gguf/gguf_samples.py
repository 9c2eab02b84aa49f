"""Small GGUF files written with gguf's own GGUFWriter, and byte-level helpers to corrupt copies of files.

Offsets of fields are found by searching for their (length-prefixed) names, never with rocmforge's parser, so
the mutations do not depend on the code under test.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T, GGUFEndian, GGUFValueType, GGUFWriter
from gguf.quants import quantize

TINY = dict(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16, d_ff=96, vocab=40)
TOKENS = ["<unk>", "<s>", "</s>"] + [f"tok{i}" for i in range(30)] + ["é", "日本", "🙂", " ", "", "a\x00b", "Ġthe"]
assert len(TOKENS) == TINY["vocab"]


def tiny_tensors(rng: np.random.Generator, *, tied: bool = False, f32_only: bool = False) -> dict[str, tuple]:
    """name -> (array, ggml type) for a 2-layer llama-shaped model (numpy order shapes)."""
    d, hd, ff, v = TINY["d_model"], TINY["head_dim"], TINY["d_ff"], TINY["vocab"]
    q, kv = TINY["n_heads"] * hd, TINY["n_kv_heads"] * hd
    plan = {"token_embd.weight": ((v, d), T.Q8_0), "output_norm.weight": ((d,), T.F32)}
    if not tied:
        plan["output.weight"] = ((v, d), T.F16)
    for i in range(TINY["n_layers"]):
        plan |= {f"blk.{i}.attn_norm.weight": ((d,), T.F32), f"blk.{i}.attn_q.weight": ((q, d), T.F16),
                 f"blk.{i}.attn_k.weight": ((kv, d), T.Q8_0), f"blk.{i}.attn_v.weight": ((kv, d), T.F32),
                 f"blk.{i}.attn_output.weight": ((d, q), T.Q8_0), f"blk.{i}.ffn_norm.weight": ((d,), T.F32),
                 f"blk.{i}.ffn_gate.weight": ((ff, d), T.Q8_0), f"blk.{i}.ffn_up.weight": ((ff, d), T.Q8_0),
                 f"blk.{i}.ffn_down.weight": ((d, ff), T.Q8_0)}
    out = {}
    for name, (shape, qtype) in plan.items():
        values = rng.standard_normal(shape).astype(np.float32)
        qtype = T.F32 if f32_only else qtype
        out[name] = (values if qtype == T.F32 else values.astype(np.float16) if qtype == T.F16
                     else quantize(values, qtype), qtype)
    return out


def write_gguf(path: Path, *, arch: str = "llama", kv: dict | None = None, tensors: dict | None = None,
               alignment: int | None = None, big_endian: bool = False) -> Path:
    """kv: key -> (value, GGUFValueType[, array sub type]); tensors: name -> (array, ggml type)."""
    w = GGUFWriter(path, arch, endianess=GGUFEndian.BIG if big_endian else GGUFEndian.LITTLE)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, spec in (kv or {}).items():
        w.add_key_value(key, spec[0], spec[1], *spec[2:])
    for name, (array, qtype) in (tensors or {}).items():
        w.add_tensor(name, array, raw_dtype=None if qtype in (T.F32, T.F16) else qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def tiny_kv(drop: tuple[str, ...] = (), arch: str = "llama") -> dict:
    t = TINY
    kv = {
        "general.name": ("tiny test model", GGUFValueType.STRING),
        f"{arch}.block_count": (t["n_layers"], GGUFValueType.UINT32),
        f"{arch}.context_length": (256, GGUFValueType.UINT32),
        f"{arch}.embedding_length": (t["d_model"], GGUFValueType.UINT32),
        f"{arch}.feed_forward_length": (t["d_ff"], GGUFValueType.UINT32),
        f"{arch}.attention.head_count": (t["n_heads"], GGUFValueType.UINT32),
        f"{arch}.attention.head_count_kv": (t["n_kv_heads"], GGUFValueType.UINT32),
        f"{arch}.attention.layer_norm_rms_epsilon": (1e-6, GGUFValueType.FLOAT32),
        f"{arch}.rope.freq_base": (500000.0, GGUFValueType.FLOAT32),
        f"{arch}.rope.dimension_count": (t["head_dim"], GGUFValueType.UINT32),
        f"{arch}.rope.scaling.factor": (4.0, GGUFValueType.FLOAT32),
        f"{arch}.attention.sliding_window": (128, GGUFValueType.UINT32),
        f"{arch}.attention.logit_softcapping": (50.0, GGUFValueType.FLOAT32),
        "tokenizer.ggml.model": ("llama", GGUFValueType.STRING),
        "tokenizer.ggml.tokens": (TOKENS, GGUFValueType.ARRAY, GGUFValueType.STRING),
        "tokenizer.ggml.scores": ([float(-i) for i in range(t["vocab"])], GGUFValueType.ARRAY, GGUFValueType.FLOAT32),
        "tokenizer.ggml.token_type": ([1] * t["vocab"], GGUFValueType.ARRAY, GGUFValueType.INT32),
    }
    return {k: v for k, v in kv.items() if k.removeprefix(f"{arch}.") not in drop and k not in drop}


def every_value_type_kv() -> dict:
    """One key per GGUF value type, a nested array and an empty-ish string, for round-trip checks."""
    V = GGUFValueType
    return {
        "test.u8": (200, V.UINT8), "test.i8": (-100, V.INT8), "test.u16": (60000, V.UINT16),
        "test.i16": (-30000, V.INT16), "test.u32": (4_000_000_000, V.UINT32), "test.i32": (-2_000_000_000, V.INT32),
        "test.f32": (0.1, V.FLOAT32), "test.bool": (True, V.BOOL), "test.str": ("héllo 🙂", V.STRING),
        "test.u64": (2**64 - 1, V.UINT64), "test.i64": (-(2**63), V.INT64), "test.f64": (0.1, V.FLOAT64),
        "test.empty_str": ("", V.STRING),
        "test.arr_u8": ([1, 2, 255], V.ARRAY, V.UINT8), "test.arr_i64": ([-1, 2**62], V.ARRAY, V.INT64),
        "test.arr_bool": ([True, False, True], V.ARRAY, V.BOOL), "test.arr_f64": ([0.5, -2.25], V.ARRAY, V.FLOAT64),
        "test.nested": ([[1, 2, 3], [4, 5]], V.ARRAY, V.ARRAY),
        "test.nested_str": ([["a", "bc"], ["日本"]], V.ARRAY, V.ARRAY),
    }


def write_tiny_model(path: Path, *, seed: int = 0, drop: tuple[str, ...] = (), tied: bool = False,
                     extra_kv: dict | None = None, **kw) -> Path:
    kv = tiny_kv(drop) | (extra_kv or {})
    return write_gguf(path, kv=kv, tensors=tiny_tensors(np.random.default_rng(seed), tied=tied), **kw)


# -- byte surgery ----------------------------------------------------------------------------------------------
def find_string(data: bytes, text: str) -> int:
    """Offset of the GGUF string ``text`` (its u64 length field) in ``data``; the first occurrence."""
    raw = text.encode()
    at = data.find(struct.pack("<Q", len(raw)) + raw)
    assert at >= 0, f"{text!r} not found"
    return at


def after_string(data: bytes, text: str) -> int:
    return find_string(data, text) + 8 + len(text.encode())


def tensor_info_at(data: bytes, name: str) -> dict[str, int]:
    """Offsets of a tensor info's fields: n_dims, dims (first), type, offset."""
    pos = after_string(data, name)
    n_dims = struct.unpack_from("<I", data, pos)[0]
    dims = pos + 4
    return {"n_dims": pos, "dims": dims, "type": dims + 8 * n_dims, "offset": dims + 8 * n_dims + 4,
            "ndim_value": n_dims}


def put(data: bytearray, pos: int, fmt: str, value) -> bytearray:
    struct.pack_into("<" + fmt, data, pos, value)
    return data


def get(data: bytes, pos: int, fmt: str):
    return struct.unpack_from("<" + fmt, data, pos)[0]
