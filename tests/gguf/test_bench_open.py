"""Benchmarks: opening gemma-3-270m until its config is known, and bulk-decoding its 262,144 token strings.
Bounded rounds so CI stays quick; `--benchmark-disable` runs each once as a plain test. Figures: docs/PERF.md."""

from __future__ import annotations

from rocmforge_core.gguf import open_gguf


def test_bench_open_gemma_to_config(benchmark, gemma_path):
    config = benchmark.pedantic(lambda: open_gguf(gemma_path).config, rounds=10, iterations=1, warmup_rounds=1)
    assert config.vocab_size == 262144 and config.n_layers == 18


def test_bench_decode_gemma_tokens(benchmark, gemma_path):
    tokens = open_gguf(gemma_path).metadata["tokenizer.ggml.tokens"]
    decoded = benchmark.pedantic(tokens.tolist, rounds=5, iterations=1, warmup_rounds=1)
    assert len(decoded) == 262144 and decoded[2] == "<bos>"
