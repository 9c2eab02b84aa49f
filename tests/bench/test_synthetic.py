"""Synthetic model files with a tokenizer copied from a vocabulary GGUF (`rocmforge bench --write-synthetic
SHAPE:TYPE --vocab-from VOCAB --out FILE`), as scripts/serving-bench.sh writes them for rocmforge and llama.cpp."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rocmforge_core.cli.bench import MIXES, SHAPES, BenchError, Shape, write_synthetic
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


def check_copied(model: Path, vocab: Path) -> None:
    with open_gguf(model) as m, open_gguf(vocab) as v:
        keys = [k for k in v.metadata if k.startswith("tokenizer.")]
        assert keys and all(k in m.metadata for k in keys)
        for key in keys:
            assert m.value_types[key] == v.value_types[key], key
            assert same_value(m.metadata[key], v.metadata[key]), key
        n = len(v.metadata["tokenizer.ggml.tokens"])
        assert m.config.vocab_size == n and m.tensors["token_embd.weight"].rows == n
    assert Tokenizer.from_gguf(model).encode(TEXT) == Tokenizer.from_gguf(vocab).encode(TEXT)


def test_synthetic_file_gets_the_vocabulary_files_tokenizer(tmp_path):
    vocab = tmp_path / "vocab.gguf"
    tokens = write_vocab(vocab)
    model = write_synthetic("llama-tiny:Q8_0", tmp_path / "tiny.gguf", vocab)
    assert model == tmp_path / "tiny.gguf"
    check_copied(model, vocab)
    assert Tokenizer.from_gguf(model).encode(TEXT)[0] == len(tokens) - 2  # add_bos_token came along


def test_llama3_vocabulary_both_engines_load(tmp_path):
    if not LLAMA3_VOCAB.exists():
        pytest.skip(f"llama.cpp's Llama-3 vocabulary is not beside the checkout ({LLAMA3_VOCAB})")
    model = write_synthetic("llama-tiny:Q4_K_M", tmp_path, LLAMA3_VOCAB)
    assert model.name == "llama-tiny-Q4_K_M.gguf"
    check_copied(model, LLAMA3_VOCAB)
    assert Tokenizer.from_gguf(model).encode("Hello world") == [128000, 9906, 1917]


def test_untied_shape_writes_an_output_projection(tmp_path, monkeypatch):
    monkeypatch.setitem(SHAPES, "untied-tiny", Shape(2, 256, 4, 2, 512, 1000, context=2048, tied_output=False))
    with open_gguf(write_synthetic("untied-tiny:Q4_K_M", tmp_path)) as f:
        types = {name: info.type_name for name, info in f.tensors.items()}
        assert not f.config.tied_output
    main, _, output = MIXES["Q4_K_M"]
    assert types["output.weight"] == output == "Q6_K"
    assert types["token_embd.weight"] == main == "Q4_K"
    assert SHAPES["llama-8b"] == Shape(32, 4096, 32, 8, 14336, 128256, tied_output=False)


def test_a_file_without_tokens_is_no_vocabulary(tmp_path):
    plain = write_synthetic("llama-tiny:Q8_0", tmp_path)
    with pytest.raises(BenchError, match="holds no vocabulary"):
        write_synthetic("llama-tiny:Q8_0", tmp_path / "other.gguf", plain)


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rocmforge_core.cli.bench", *args], capture_output=True, text=True,
                          timeout=120)


def test_write_synthetic_command(tmp_path):
    vocab, out = tmp_path / "vocab.gguf", tmp_path / "m.gguf"
    write_vocab(vocab)
    proc = run_bench("--write-synthetic", "llama-tiny:Q4_0", "--vocab-from", str(vocab), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    check_copied(out, vocab)
    proc = run_bench("--synthetic", "llama-tiny:Q4_0", "--out", str(out))
    assert proc.returncode == 1 and "--out goes with --write-synthetic" in proc.stderr
