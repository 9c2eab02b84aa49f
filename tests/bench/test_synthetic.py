"""Synthetic model files with a tokenizer copied from a vocabulary GGUF (`rocmforge bench --write-synthetic
SHAPE:TYPE --vocab-from VOCAB --out FILE`), as scripts/serving-bench.sh writes them for rocmforge and llama.cpp."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rocmforge_core.cli import shapes
from rocmforge_core.cli.shapes import MIXES, SHAPES, Shape, ShapeError, tensor_plan, write_synthetic
from rocmforge_core.gguf import open_gguf
from rocmforge_core.tokenizer import Tokenizer

LLAMA3_VOCAB = Path(__file__).resolve().parents[2].parent / "shared" / "anchors" / "ggml-vocab-llama-bpe.gguf"
TEXT = "Hello world, the model is a token 1234"


def byte_chars() -> list[str]:  # GPT-2's printable stand-ins for the 256 bytes
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    extra = [b for b in range(256) if b not in keep]
    table = dict(zip(keep, keep)) | {b: 256 + i for i, b in enumerate(extra)}
    return [chr(table[b]) for b in range(256)]


def write_vocab(path: Path) -> list[str]:
    """A small byte-level BPE vocabulary file in the shape of llama.cpp's ggml-vocab-*.gguf (no tensors)."""
    import gguf

    merges = ["Ġ t", "h e", "Ġt he", "Ġ m", "o d", "Ġm od", "e l", "Ġmod el", "l o", "H e", "He l", "Hel lo"]
    tokens = byte_chars() + [a + b for a, b in (m.split() for m in merges)] + ["<|begin|>", "<|end|>"]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types([1] * (len(tokens) - 2) + [3, 3])
    w.add_token_merges(merges)
    w.add_bos_token_id(len(tokens) - 2)
    w.add_eos_token_id(len(tokens) - 1)
    w.add_add_bos_token(True)
    w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    return tokens


def same_value(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    return a == b


PER_TOKEN = ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.scores")


def check_copied(model: Path, vocab: Path, shape_vocab: int) -> None:
    """Every tokenizer key copied exactly, the per-token arrays padded to the shape's vocabulary if it is larger."""
    with open_gguf(model) as m, open_gguf(vocab) as v:
        keys = [k for k in v.metadata if k.startswith("tokenizer.")]
        assert keys and all(k in m.metadata for k in keys)
        n = len(v.metadata["tokenizer.ggml.tokens"])
        for key in keys:
            assert m.value_types[key] == v.value_types[key], key
            got = m.metadata[key]
            if key in PER_TOKEN:
                assert list(got[:n]) == list(v.metadata[key]), key
            else:
                assert same_value(got, v.metadata[key]), key
        size = max(n, shape_vocab)
        assert m.config.vocab_size == size and m.tensors["token_embd.weight"].rows == size
    assert Tokenizer.from_gguf(model).encode(TEXT) == Tokenizer.from_gguf(vocab).encode(TEXT)


def test_synthetic_file_gets_the_vocabulary_files_tokenizer(tmp_path):
    vocab = tmp_path / "vocab.gguf"
    tokens = write_vocab(vocab)
    model = write_synthetic("llama-tiny:Q8_0", tmp_path / "tiny.gguf", vocab)
    assert model == tmp_path / "tiny.gguf"
    check_copied(model, vocab, 1000)
    assert Tokenizer.from_gguf(model).encode(TEXT)[0] == len(tokens) - 2  # add_bos_token came along


def test_llama3_vocabulary_both_engines_load(tmp_path):
    if not LLAMA3_VOCAB.exists():
        pytest.skip(f"llama.cpp's Llama-3 vocabulary is not beside the checkout ({LLAMA3_VOCAB})")
    model = write_synthetic("llama-tiny:Q4_K_M", tmp_path, LLAMA3_VOCAB)
    assert model.name == "llama-tiny-Q4_K_M.gguf"
    check_copied(model, LLAMA3_VOCAB, 1000)
    assert Tokenizer.from_gguf(model).encode("Hello world") == [128000, 9906, 1917]


def test_untied_shape_writes_an_output_projection(tmp_path, monkeypatch):
    monkeypatch.setitem(SHAPES, "untied-tiny", Shape("llama", 2, 256, 4, 2, 512, 1000, context=2048,
                                                     tied_output=False))
    with open_gguf(write_synthetic("untied-tiny:Q4_K_M", tmp_path)) as f:
        types = {name: info.type_name for name, info in f.tensors.items()}
        assert not f.config.tied_output
    main, _, output = MIXES["Q4_K_M"]
    assert types["output.weight"] == output == "Q6_K"
    assert types["token_embd.weight"] == main == "Q4_K"


def test_a_file_without_tokens_is_no_vocabulary(tmp_path):
    plain = write_synthetic("llama-tiny:Q8_0", tmp_path)
    with pytest.raises(ShapeError, match="holds no vocabulary"):
        write_synthetic("llama-tiny:Q8_0", tmp_path / "other.gguf", plain)


def test_full_size_shapes_are_the_released_models():
    dims = {name: (s.arch, s.n_layers, s.d_model, s.n_heads, s.n_kv_heads, s.head_size, s.d_ff, s.vocab)
            for name, s in SHAPES.items()}
    assert dims["llama-8b"] == ("llama", 32, 4096, 32, 8, 128, 14336, 128256)
    assert dims["qwen2-7b"] == ("qwen2", 28, 3584, 28, 4, 128, 18944, 152064)
    assert dims["qwen3-8b"] == ("qwen3", 36, 4096, 32, 8, 128, 12288, 151936)
    assert dims["gemma3-4b"] == ("gemma3", 34, 2560, 8, 4, 256, 10240, 262144)
    assert SHAPES["llama-8b"].rope_base == 500000 and SHAPES["llama-8b"].llama3_rope == 8
    assert SHAPES["gemma3-4b"].sliding_window == 1024 and SHAPES["gemma3-4b"].tied_output
    assert not SHAPES["qwen2-7b"].tied_output and not SHAPES["qwen3-8b"].tied_output


FULL_SIZE = ["llama-8b", "qwen2-7b", "qwen3-8b", "gemma3-4b"]


@pytest.mark.parametrize("name", FULL_SIZE)
def test_every_tiny_twin_keeps_the_architectures_features(name):
    full, tiny = SHAPES[name], SHAPES[name.split("-")[0] + "-tiny"]
    features = lambda s: (s.arch, s.tied_output, bool(s.llama3_rope), bool(s.rope_linear), bool(s.sliding_window),
                          s.head_size * s.n_heads != s.d_model or s.arch in ("qwen3", "gemma3"),
                          s.n_heads != s.n_kv_heads)
    assert features(tiny) == features(full)
    assert tiny.n_layers * tiny.d_model * 20 < full.n_layers * full.d_model
    for s in (full, tiny):  # every format's block fits every row
        assert s.d_model % 256 == s.d_ff % 256 == (s.n_heads * s.head_size) % 256 == 0
    if tiny.sliding_window:  # layers of both kinds, and prompts longer than the window in the tests
        assert tiny.n_layers >= 6 and tiny.sliding_window < 16


# What llama.cpp's loader requires of each architecture (src/llama-model.cpp, src/models/<arch>.cpp)
LLAMA_CPP_KEYS = ["context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count",
                  "attention.head_count_kv", "attention.layer_norm_rms_epsilon", "rope.freq_base"]
LLAMA_CPP_ARCH_KEYS = {"qwen3": ["attention.key_length", "attention.value_length"],
                       "gemma3": ["attention.key_length", "attention.value_length", "attention.sliding_window",
                                  "rope.scaling.type", "rope.scaling.factor"]}
LAYER_TENSORS = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
                 "ffn_down"]
ARCH_TENSORS = {"qwen2": ["attn_q.bias", "attn_k.bias", "attn_v.bias"],
                "qwen3": ["attn_q_norm", "attn_k_norm"],
                "gemma3": ["attn_q_norm", "attn_k_norm", "post_attention_norm", "post_ffw_norm"]}


@pytest.mark.parametrize("name", ["llama-tiny", "qwen2-tiny", "qwen3-tiny", "gemma3-tiny"])
@pytest.mark.parametrize("qtype", ["Q4_K_M", "F16"])
def test_written_files_read_back_with_gguf_py(tmp_path, name, qtype):
    import gguf

    s = SHAPES[name]
    reader = gguf.GGUFReader(str(write_synthetic(f"{name}:{qtype}", tmp_path)))
    fields = reader.fields
    assert bytes(fields["general.architecture"].parts[-1]).decode() == s.arch
    assert fields["general.file_type"].parts[-1][0] == shapes.FILE_TYPES[qtype]
    for key in LLAMA_CPP_KEYS + LLAMA_CPP_ARCH_KEYS.get(s.arch, []):
        assert f"{s.arch}.{key}" in fields, key
    tensors = {t.name: t for t in reader.tensors}
    plan = tensor_plan(s, qtype)
    assert list(tensors) == [n for n, _, _ in plan]
    for n, shape, type_name in plan:  # ggml's shape is numpy's reversed
        assert tensors[n].tensor_type.name == type_name and tuple(int(d) for d in tensors[n].shape) == shape[::-1]
    for i in range(s.n_layers):
        for t in LAYER_TENSORS + ARCH_TENSORS.get(s.arch, []):
            assert f"blk.{i}.{t}" + ("" if t.endswith(".bias") else ".weight") in tensors
    assert ("output.weight" in tensors) != s.tied_output
    assert ("rope_freqs.weight" in tensors) == bool(s.llama3_rope)


def test_rocmforge_reads_each_architectures_settings(tmp_path):
    from rocmforge_core.gguf import open_gguf

    with open_gguf(write_synthetic("gemma3-tiny:Q4_0", tmp_path)) as f:
        c = f.config
        assert (c.arch, c.head_dim, c.sliding_window, c.rope_freq_scale) == ("gemma3", 128, 8, 1 / 8)
    with open_gguf(write_synthetic("qwen3-tiny:Q4_0", tmp_path)) as f:
        assert (f.config.arch, f.config.head_dim, f.config.d_model) == ("qwen3", 128, 256)
    import gguf
    reader = gguf.GGUFReader(str(write_synthetic("llama-tiny:Q4_0", tmp_path)))
    factors = next(t.data for t in reader.tensors if t.name == "rope_freqs.weight")
    assert factors.shape == (32,) and factors[0] == 1.0 and factors[-1] == 8.0  # high frequencies kept, low divided
    assert np.all(np.diff(factors) >= 0)


def test_a_shape_with_more_tokens_than_the_vocabulary_pads_it_with_unused_tokens(tmp_path, monkeypatch):
    vocab = tmp_path / "vocab.gguf"
    tokens = write_vocab(vocab)
    model = write_synthetic("gemma3-tiny:Q4_0", tmp_path / "m.gguf", vocab)
    with open_gguf(model) as f:
        names = f.metadata["tokenizer.ggml.tokens"]
        types = f.metadata["tokenizer.ggml.token_type"]
        assert f.config.vocab_size == len(names) == len(types) == SHAPES["gemma3-tiny"].vocab == 1000
        assert f.tensors["token_embd.weight"].rows == 1000
        assert names[len(tokens)] == "<unused_pad_0>" and set(types[len(tokens):].tolist()) == {5}
    assert Tokenizer.from_gguf(model).encode(TEXT) == Tokenizer.from_gguf(vocab).encode(TEXT)


def test_files_do_not_depend_on_pieces_or_threads(tmp_path, monkeypatch):
    whole = write_synthetic("llama-tiny:F16", tmp_path / "whole.gguf").read_bytes()
    monkeypatch.setattr(shapes, "CHUNK_BYTES", 4096)  # 4 rows of 256 f32 values at a time
    monkeypatch.setattr(shapes, "WRITER_THREADS", 1)
    assert write_synthetic("llama-tiny:F16", tmp_path / "pieces.gguf").read_bytes() == whole
    threaded = write_synthetic("qwen2-tiny:Q4_K_M", tmp_path / "one.gguf").read_bytes()
    monkeypatch.setattr(shapes, "WRITER_THREADS", 3)
    assert write_synthetic("qwen2-tiny:Q4_K_M", tmp_path / "three.gguf").read_bytes() == threaded


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rocmforge_core.cli.bench", *args], capture_output=True, text=True,
                          timeout=120)


def test_write_synthetic_command(tmp_path):
    vocab, out = tmp_path / "vocab.gguf", tmp_path / "m.gguf"
    write_vocab(vocab)
    proc = run_bench("--write-synthetic", "llama-tiny:Q4_0", "--vocab-from", str(vocab), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    check_copied(out, vocab, 1000)
    proc = run_bench("--synthetic", "llama-tiny:Q4_0", "--out", str(out))
    assert proc.returncode == 1 and "--out goes with --write-synthetic" in proc.stderr


@pytest.mark.parametrize("qtype", ["Q4_K_M", "Q8_0", "Q4_0", "F16"])
def test_norms_ahead_of_a_matrix_bring_its_products_to_about_unit_rms(qtype):
    """Random blocks have rms far from a trained matrix's 1/sqrt(cols) (Q8_0's 0.65 over 4096 columns), so at unit
    norms an 8B stack outgrew f16 within five layers; scaled norms (a power of two) keep each product after a norm
    near unit rms. F16 files are made at that scale already and keep unit norms."""
    from rocmforge_core.formats import Weight, dequantize_weight
    from rocmforge_core.registry import get_registry

    registry, s = get_registry(), SHAPES["llama-8b"]
    gain = shapes.norm_gain(s, tensor_plan(s, qtype), registry)
    assert np.log2(gain) == round(np.log2(gain)) and (gain == 1.0) == (qtype == "F16")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, s.d_model)).astype(np.float32) * np.float32(gain)  # rmsnorm's output times the gain
    for type_name in {t for _, shape, t in tensor_plan(s, qtype) if len(shape) == 2}:
        fmt = registry.format(type_name)
        raw = shapes.make_tensor(rng, s, "w", (64, s.d_model), fmt)
        w = dequantize_weight(Weight("w", fmt, (64, s.d_model), raw))
        rms = float(np.sqrt(np.mean((x @ w.T) ** 2)))
        assert 0.1 < rms < 2.0, (type_name, rms)
