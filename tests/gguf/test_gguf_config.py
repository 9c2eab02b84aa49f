"""ModelConfig from metadata, and inferred from tensor shapes where the metadata is silent."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGUFValueType

from gguf_samples import TINY, write_tiny_model
from rocmforge_core.errors import GGUFError
from rocmforge_core.gguf import ModelConfig, open_gguf


def test_gemma_config(gemma_path):
    c = open_gguf(gemma_path).config
    assert (c.arch, c.n_layers, c.d_model, c.n_heads, c.n_kv_heads, c.head_dim, c.head_dim_v, c.d_ff) == \
           ("gemma3", 18, 640, 4, 1, 256, 256, 2048)
    # gemma3 files state no vocab_size: it comes from token_embd's rows
    assert "gemma3.vocab_size" not in open_gguf(gemma_path).metadata and c.vocab_size == 262144
    assert (c.context_length, c.sliding_window, c.rope_base, c.rope_dim, c.rope_freq_scale) == \
           (32768, 512, 1e6, 256, 1.0)
    assert c.rms_eps == float(np.float32(1e-6)) and c.tied_output


def test_smollm2_config(smollm2_path):
    c = open_gguf(smollm2_path).config
    assert (c.arch, c.n_layers, c.d_model, c.n_heads, c.n_kv_heads, c.head_dim, c.d_ff, c.vocab_size) == \
           ("llama", 30, 576, 9, 3, 64, 1536, 49152)
    assert (c.rope_base, c.rope_dim, c.context_length, c.sliding_window) == (100000.0, 64, 8192, 0)
    assert c.tied_output


def _tiny_expected(**changes) -> dict:
    t = TINY
    return dict(arch="llama", name="tiny test model", n_layers=t["n_layers"], d_model=t["d_model"],
                n_heads=t["n_heads"], n_kv_heads=t["n_kv_heads"], head_dim=t["head_dim"], head_dim_v=t["head_dim"],
                d_ff=t["d_ff"], vocab_size=t["vocab"], context_length=256, rms_eps=float(np.float32(1e-6)),
                rope_base=500000.0, rope_dim=t["head_dim"], rope_freq_scale=0.25, sliding_window=128,
                tied_output=False, extra={"attention.logit_softcapping": 50.0}) | changes


def test_config_from_full_metadata(tiny_model):
    c = open_gguf(tiny_model).config
    assert isinstance(c, ModelConfig)
    extra = {k: v for k, v in c.extra.items() if not k.startswith("test")}
    assert {**c.__dict__, "extra": extra} == _tiny_expected()


def test_sizes_inferred_from_tensor_shapes(tmp_path):
    drop = ("block_count", "embedding_length", "feed_forward_length", "attention.head_count_kv",
            "rope.dimension_count", "attention.layer_norm_rms_epsilon", "rope.freq_base", "rope.scaling.factor",
            "attention.sliding_window", "context_length", "general.name")
    c = open_gguf(write_tiny_model(tmp_path / "t.gguf", drop=drop, tied=True)).config
    assert c.__dict__ == _tiny_expected(name="", context_length=0, rms_eps=1e-5, rope_base=10000.0,
                                        rope_freq_scale=1.0, sliding_window=0, tied_output=True)


def test_head_count_inferred_from_key_length(tmp_path):
    kv = {"llama.attention.key_length": (TINY["head_dim"], GGUFValueType.UINT32)}
    c = open_gguf(write_tiny_model(tmp_path / "t.gguf", drop=("attention.head_count", "attention.head_count_kv"),
                                   extra_kv=kv)).config
    assert (c.n_heads, c.n_kv_heads, c.head_dim, c.head_dim_v) == (TINY["n_heads"], TINY["n_kv_heads"],
                                                                   TINY["head_dim"], TINY["head_dim"])


def test_per_layer_head_counts_are_kept_in_extra(tmp_path):
    kv = {"llama.attention.head_count_kv": ([2, 1], GGUFValueType.ARRAY, GGUFValueType.UINT32)}
    c = open_gguf(write_tiny_model(tmp_path / "t.gguf", extra_kv=kv)).config
    assert c.n_kv_heads == 2 and c.extra["attention.head_count_kv"] == [2, 1]


def test_unknowable_head_count_is_a_clear_error(tmp_path):
    gf = open_gguf(write_tiny_model(tmp_path / "t.gguf", drop=("attention.head_count",)))
    with pytest.raises(GGUFError, match="cannot tell the attention head count of this llama model"):
        gf.config


def test_inconsistent_shapes_are_a_clear_error(tmp_path):
    kv = {"llama.attention.head_count": (5, GGUFValueType.UINT32)}  # 64 query rows do not split into 5 heads
    gf = open_gguf(write_tiny_model(tmp_path / "t.gguf", drop=("attention.head_count",), extra_kv=kv))
    with pytest.raises(GGUFError, match="does not divide evenly"):
        gf.config


def test_non_integer_size_is_a_clear_error(tmp_path):
    kv = {"llama.block_count": ("two", GGUFValueType.STRING)}
    gf = open_gguf(write_tiny_model(tmp_path / "t.gguf", drop=("block_count",), extra_kv=kv))
    with pytest.raises(GGUFError, match="layer count of this llama model must be a positive integer"):
        gf.config


def test_vocab_only_files_give_a_config_without_tensors(vocab_files):
    for path in vocab_files:
        c = open_gguf(path).config
        assert c.vocab_size == len(open_gguf(path).metadata["tokenizer.ggml.tokens"])
        assert not c.tied_output


def test_layer_norm_epsilon_serves_layernorm_models(vocab_files):
    gpt2 = next(p for p in vocab_files if "gpt-2" in p.name)
    c = open_gguf(gpt2).config
    assert c.arch == "gpt2" and c.rms_eps == c.extra["attention.layer_norm_epsilon"]


def test_missing_architecture_is_a_clear_error(tmp_path, tiny_bytes):
    at = tiny_bytes.find(b"general.architecture")
    tiny_bytes[at:at + 7] = b"generix"
    (tmp_path / "t.gguf").write_bytes(tiny_bytes)
    with pytest.raises(GGUFError, match="no general.architecture"):
        open_gguf(tmp_path / "t.gguf").config


@pytest.mark.parametrize("key", ["block_count", "embedding_length", "feed_forward_length", "attention.head_count",
                                 "attention.head_count_kv", "attention.key_length", "attention.value_length",
                                 "context_length", "attention.layer_norm_rms_epsilon", "rope.freq_base",
                                 "rope.dimension_count", "rope.scaling.factor", "attention.sliding_window",
                                 "vocab_size"])
def test_values_of_the_wrong_kind_are_clear_errors(tmp_path, key):
    """A config key holding a string, a string array, a float array, a bool, NaN, zero or a huge number: the
    config is either built or refused with a GGUFError naming what is wrong, never another exception."""
    bad = [("x", GGUFValueType.STRING), (["a"], GGUFValueType.ARRAY, GGUFValueType.STRING),
           ([1.5, 2.5], GGUFValueType.ARRAY, GGUFValueType.FLOAT32), (True, GGUFValueType.BOOL),
           (float("nan"), GGUFValueType.FLOAT32), (0, GGUFValueType.UINT32), (2**64 - 1, GGUFValueType.UINT64),
           (-3, GGUFValueType.INT32)]
    refused = 0
    for i, value in enumerate(bad):
        gf = open_gguf(write_tiny_model(tmp_path / f"{i}.gguf", drop=(key,), extra_kv={f"llama.{key}": value}))
        try:
            gf.config
        except GGUFError as exc:
            refused += 1
            assert "llama" in str(exc) and "\n" not in str(exc)
    assert refused >= 3  # at least the string, the string array and the float array


def test_expert_feed_forward_length_inferred_from_the_expert_stack(tmp_path):
    from gguf_samples import tiny_kv, tiny_tensors, write_gguf

    tensors = {k: v for k, v in tiny_tensors(np.random.default_rng(0), f32_only=True).items()
               if "ffn_up" not in k and "ffn_gate" not in k}
    tensors["blk.0.ffn_up_exps.weight"] = (np.zeros((4, 48, TINY["d_model"]), np.float32), 0)  # experts, d_ff, d
    c = open_gguf(write_gguf(tmp_path / "moe.gguf", kv=tiny_kv(drop=("feed_forward_length",)),
                             tensors=tensors)).config
    assert c.d_ff == 48 and c.vocab_size == TINY["vocab"]


@pytest.mark.parametrize("key, value, message", [
    ("block_count", 2**31 - 1, "'llama.block_count' says 2147483647 layers but the file holds tensors of layers 0 "
                               "to 1 only"),
    ("block_count", 3, "'llama.block_count' says 3 layers but the file holds tensors of layers 0 to 1 only"),
    ("embedding_length", 65, "'llama.embedding_length' is 65 but token_embd.weight holds vectors of 64"),
    ("attention.head_count", 8, "2 key heads of 8 need 16 rows but blk.0.attn_k.weight has 32"),  # head_dim 64 / 8
    ("attention.head_count_kv", 4, "4 key heads of 16 need 64 rows but blk.0.attn_k.weight has 32"),
    ("feed_forward_length", 97, "'llama.feed_forward_length' is 97 but blk.0.ffn_up.weight has 96 rows"),
    ("vocab_size", 41, "'llama.vocab_size' is 41 but token_embd.weight holds 40 tokens"),
    ("context_length", 0, "'llama.context_length' is 0: a model's context holds at least one token"),
])
def test_sizes_the_tensors_contradict_are_refused_before_anything_is_sized_by_them(tmp_path, key, value, message):
    gf = open_gguf(write_tiny_model(tmp_path / "t.gguf", drop=(key,),
                                    extra_kv={f"llama.{key}": (value, GGUFValueType.UINT32)}))
    with pytest.raises(GGUFError) as err:
        gf.config
    assert str(err.value) == f"t.gguf: {message}"


def test_key_value_heads_must_divide_the_query_heads(tmp_path):
    from gguf_samples import tiny_kv, tiny_tensors, write_gguf

    tensors = tiny_tensors(np.random.default_rng(0), f32_only=True)
    for i in range(TINY["n_layers"]):  # 3 key/value heads of 16: consistent rows, 4 query heads
        tensors[f"blk.{i}.attn_k.weight"] = tensors[f"blk.{i}.attn_v.weight"] = (np.zeros((48, 64), np.float32), 0)
    kv = tiny_kv(drop=("attention.head_count_kv",)) | {"llama.attention.head_count_kv": (3, GGUFValueType.UINT32)}
    with pytest.raises(GGUFError, match="the attention head count 4 is not a multiple of the key/value head count 3"):
        open_gguf(write_gguf(tmp_path / "t.gguf", kv=kv, tensors=tensors)).config


def test_a_huge_block_count_fails_fast_when_loading(tmp_path):
    """2**31 - 1 layers took 30 s and 3.6 GB before a MemoryError: the architecture listed every layer's tensors."""
    from rocmforge_core.engine import Model

    kv = {"llama.block_count": (2**31 - 1, GGUFValueType.UINT32)}
    path = write_tiny_model(tmp_path / "t.gguf", drop=("block_count",), extra_kv=kv)
    with pytest.raises(GGUFError, match="says 2147483647 layers"):
        Model(path, backend="reference")
