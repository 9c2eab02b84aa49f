"""ModelConfig: the sizes and constants a model needs, from GGUF metadata, inferred from tensor shapes where the
metadata is silent (keys follow llama.cpp's ``<arch>.<key>`` names)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from rocmforge_core.errors import GGUFError
from rocmforge_core.gguf.reader import quote
from rocmforge_core.gguf.strings import StringArray

if TYPE_CHECKING:
    from rocmforge_core.gguf.file import GGUFFile

DEFAULT_RMS_EPS = 1e-5      # llama.cpp's default when a file states no epsilon
DEFAULT_ROPE_BASE = 10000.0
MAX_SIZE = 2**31  # sizes beyond this are corrupt metadata, not models

# metadata keys (after the "<arch>." prefix) that become fields; the rest of the arch's keys go to ``extra``
_FIELD_KEYS = {
    "block_count", "embedding_length", "attention.head_count", "attention.head_count_kv",
    "attention.key_length", "attention.value_length", "feed_forward_length", "vocab_size", "context_length",
    "attention.layer_norm_rms_epsilon", "rope.freq_base", "rope.dimension_count", "rope.scaling.factor",
    "attention.sliding_window",
}
_BLOCK = re.compile(r"blk\.(\d+)\.")


@dataclass
class ModelConfig:
    arch: str
    name: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int          # key_length
    head_dim_v: int        # value_length
    d_ff: int
    vocab_size: int
    context_length: int    # 0 = the file does not say
    rms_eps: float
    rope_base: float
    rope_dim: int
    rope_freq_scale: float
    sliding_window: int    # 0 = none
    tied_output: bool      # no output.weight: the output matrix is token_embd (False in a file without tensors)
    extra: dict[str, Any] = field(default_factory=dict)  # the arch's other keys, prefix stripped


def model_config(gf: "GGUFFile") -> ModelConfig:
    arch = gf.architecture
    md, tensors = gf.metadata, gf.tensors
    prefix = arch + "."
    where = gf.path.name
    model = f"this {quote(arch)[1:-1]} model"

    def key(name: str, default: Any = None) -> Any:
        value = md.get(prefix + name, default)
        if isinstance(value, np.ndarray) and value.dtype.kind in "iu":  # per-layer values (e.g. head counts):
            return int(value.max()) if value.size else default          # the field takes the largest
        return value

    def count(name: str, default: int) -> int:
        value = key(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_SIZE:
            raise GGUFError(f"{where}: {quote(prefix + name)} must be an integer from 0 to 2**31 - 1, got "
                            f"{_describe(value)}")
        return value

    def number(name: str, default: float) -> float:
        value = key(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise GGUFError(f"{where}: {quote(prefix + name)} must be a number, got {_describe(value)}")
        return value

    def dim(tensor: str, axis: int) -> int | None:
        info = tensors.get(tensor)
        return info.shape[axis] if info is not None and len(info.shape) >= -axis else None

    def rows(tensor: str) -> int | None:  # of a matrix, or of each expert's matrix in a stack
        return dim(tensor, -2)

    def need(value: Any, what: str) -> int:
        if value is None:
            raise GGUFError(f"{where}: cannot tell the {what} of {model}: neither the metadata nor "
                            f"the tensor shapes give it")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < MAX_SIZE:
            raise GGUFError(f"{where}: the {what} of {model} must be a positive integer below 2**31, got "
                            f"{_describe(value)}")
        return value

    def exact(a: int | None, b: int, what: str) -> int | None:
        if a is None:
            return None
        if a % b:
            raise GGUFError(f"{where}: the {what} of {model} does not divide evenly ({a} by {b})")
        return a // b

    layers = {int(m.group(1)) for t in tensors if (m := _BLOCK.match(t))}
    n_layers = need(key("block_count", max(layers) + 1 if layers else None), "layer count")
    d_model = need(key("embedding_length", dim("token_embd.weight", -1)), "embedding length")
    d_ff = need(key("feed_forward_length", rows("blk.0.ffn_up.weight") or rows("blk.0.ffn_gate.weight")
                    or rows("blk.0.ffn_up_exps.weight")), "feed-forward length")
    vocab = key("vocab_size", rows("token_embd.weight"))
    if vocab is None and isinstance(md.get("tokenizer.ggml.tokens"), StringArray):
        vocab = len(md["tokenizer.ggml.tokens"])
    vocab_size = need(vocab, "vocabulary size")

    q_rows, k_rows, v_rows = rows("blk.0.attn_q.weight"), rows("blk.0.attn_k.weight"), rows("blk.0.attn_v.weight")
    n_heads, head_dim = key("attention.head_count"), key("attention.key_length")
    if head_dim is not None:
        head_dim = need(head_dim, "head dimension")
        if n_heads is None:
            n_heads = exact(q_rows, head_dim, "query rows per head")
    n_heads = need(n_heads, "attention head count")
    if head_dim is None:
        head_dim = need(exact(q_rows, n_heads, "query rows per head") if q_rows
                        else exact(d_model, n_heads, "embedding per head"), "head dimension")
    n_kv_heads = key("attention.head_count_kv")
    if n_kv_heads is None:
        n_kv_heads = exact(k_rows, head_dim, "key rows per head") if k_rows else n_heads
    n_kv_heads = need(n_kv_heads, "key/value head count")
    head_dim_v = key("attention.value_length")
    if head_dim_v is None:
        head_dim_v = exact(v_rows, n_kv_heads, "value rows per head") if v_rows else head_dim
    head_dim_v = need(head_dim_v, "value head dimension")

    scaling = number("rope.scaling.factor", 0.0)
    # LayerNorm models (gpt2) state layer_norm_epsilon instead; it stays in ``extra`` to tell them apart
    eps_key = "attention.layer_norm_rms_epsilon"
    if prefix + eps_key not in md:
        eps_key = "attention.layer_norm_epsilon"
    extra = {k[len(prefix):]: _plain(v) for k, v in md.items()
             if k.startswith(prefix) and k[len(prefix):] not in _FIELD_KEYS}
    for k in ("attention.head_count", "attention.head_count_kv"):  # keep per-layer counts
        if isinstance(md.get(prefix + k), np.ndarray):
            extra[k] = _plain(md[prefix + k])
    config = ModelConfig(
        arch=arch,
        name=str(md.get("general.name", "")),
        n_layers=n_layers,
        d_model=d_model,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        head_dim=head_dim,
        head_dim_v=head_dim_v,
        d_ff=d_ff,
        vocab_size=vocab_size,
        context_length=count("context_length", 0),
        rms_eps=float(number(eps_key, DEFAULT_RMS_EPS)),
        rope_base=float(number("rope.freq_base", DEFAULT_ROPE_BASE)),
        rope_dim=count("rope.dimension_count", head_dim),
        rope_freq_scale=1.0 / float(scaling) if scaling else 1.0,
        sliding_window=count("attention.sliding_window", 0),
        tied_output=bool(tensors) and "output.weight" not in tensors,
        extra=extra,
    )
    if tensors:  # a vocabulary-only file has no tensors to hold its sizes to
        _check_against_tensors(config, gf, layers)
    return config


def _check_against_tensors(c: ModelConfig, gf: "GGUFFile", layers: set[int]) -> None:
    """Hyperparameters that the tensors present contradict are a GGUFError, checked before anything is sized by
    them (a block_count of 2**31 - 1 had the loader list every layer's tensor names: 30 s, 3.6 GB, MemoryError).
    Per-layer values (arrays) are left to the architecture."""
    md, tensors, prefix, where = gf.metadata, gf.tensors, c.arch + ".", gf.path.name

    def fail(message: str) -> None:
        raise GGUFError(f"{where}: {message}")

    def scalar(name: str) -> bool:
        return not isinstance(md.get(prefix + name), np.ndarray)

    def shape(name: str) -> tuple[int, ...] | None:
        info = tensors.get(name)
        return info.shape if info is not None and len(info.shape) == 2 else None

    if not layers:
        fail(f"{quote(prefix + 'block_count')} says {c.n_layers} layers but the file holds no layer tensors (blk.N.*)")
    if c.n_layers > max(layers) + 1:
        fail(f"{quote(prefix + 'block_count')} says {c.n_layers} layers but the file holds tensors of layers 0 to "
             f"{max(layers)} only")
    if prefix + "context_length" in md and c.context_length == 0:
        fail(f"{quote(prefix + 'context_length')} is 0: a model's context holds at least one token")
    embd = shape("token_embd.weight")
    if embd is not None and embd[1] != c.d_model:
        fail(f"{quote(prefix + 'embedding_length')} is {c.d_model} but token_embd.weight holds vectors of {embd[1]}")
    if embd is not None and prefix + "vocab_size" in md and embd[0] != c.vocab_size:
        fail(f"{quote(prefix + 'vocab_size')} is {c.vocab_size} but token_embd.weight holds {embd[0]} tokens")
    up = shape("blk.0.ffn_up.weight")
    if up is not None and scalar("feed_forward_length") and up[0] != c.d_ff:
        fail(f"{quote(prefix + 'feed_forward_length')} is {c.d_ff} but blk.0.ffn_up.weight has {up[0]} rows")
    if not (scalar("attention.head_count") and scalar("attention.head_count_kv")):
        return
    if c.n_heads % c.n_kv_heads:
        fail(f"the attention head count {c.n_heads} is not a multiple of the key/value head count {c.n_kv_heads}")
    for tensor, heads, dim, what in (("attn_q", c.n_heads, c.head_dim, "query"),
                                     ("attn_k", c.n_kv_heads, c.head_dim, "key"),
                                     ("attn_v", c.n_kv_heads, c.head_dim_v, "value")):
        found = shape(f"blk.0.{tensor}.weight")
        if found is not None and found[0] != heads * dim:
            fail(f"{heads} {what} heads of {dim} need {heads * dim} rows but blk.0.{tensor}.weight has {found[0]}")


def _plain(value: Any) -> Any:
    """Config values as plain Python (lists, not numpy arrays or lazy string arrays)."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value.tolist() if hasattr(value, "tolist") else value


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return quote(value)
    return repr(value) if isinstance(value, (int, float)) else "an array"
