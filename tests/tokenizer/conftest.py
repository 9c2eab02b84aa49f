"""Tokenizers shared by the tokenizer tests (built once per session: gemma's vocabulary has 262,144 tokens)."""

from __future__ import annotations

import pytest

from rocmforge_core.tokenizer import Tokenizer

VOCABS = ["llama-spm", "phi-3", "llama-bpe", "qwen2", "gpt-2", "deepseek-coder"]


@pytest.fixture(scope="session")
def gemma_tok(gemma_path) -> Tokenizer:
    return Tokenizer.from_gguf(gemma_path)


@pytest.fixture(scope="session")
def smollm2_tok(smollm2_path) -> Tokenizer:
    return Tokenizer.from_gguf(smollm2_path)


@pytest.fixture(scope="session")
def vocab_tok(testdata):
    cache: dict[str, Tokenizer] = {}

    def get(name: str) -> Tokenizer:
        if name not in cache:
            cache[name] = Tokenizer.from_gguf(testdata / "vocab" / f"ggml-vocab-{name}.gguf")
        return cache[name]

    return get


def vocab_cases(testdata, name: str) -> list[tuple[str, list[int]]]:
    """The (text, ids) pairs of llama.cpp's test-tokenizer-0 files for one vocabulary."""
    base = testdata / "vocab" / f"ggml-vocab-{name}.gguf"
    texts = base.with_name(base.name + ".inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    if texts[-1].endswith("\n__ggml_vocab_test__"):
        texts[-1] = texts[-1][: -len("\n__ggml_vocab_test__")]
    lines = base.with_name(base.name + ".out").read_text(encoding="utf-8").split("\n")
    assert len(lines) >= len(texts), f"{name}: fewer expected lines than test strings"
    assert all(not line for line in lines[len(texts):]), f"{name}: more expected lines than test strings"
    return [(t, [int(x) for x in line.split()]) for t, line in zip(texts, lines)]
