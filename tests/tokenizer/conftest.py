"""Tokenizers shared by the tokenizer tests (built once per session: gemma's vocabulary has 262,144 tokens)."""

from __future__ import annotations

import pytest

from rocmforge_core.tokenizer import Tokenizer


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
