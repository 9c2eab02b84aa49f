"""Benchmarks (pytest-benchmark): loading gemma-3-270m's tokenizer and encoding English text.

Run: .venv/bin/python -m pytest tests/tokenizer/test_bench.py --benchmark-columns=min,mean,max
The text is CPython's own documentation topics (pydoc_data, ~466 KB of English prose and examples), present in
every Python install. "cold" starts each round with an empty word cache; "warm" reuses it."""

from __future__ import annotations

import pytest

from rocmforge_core.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def english() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


def test_bench_load_gemma(benchmark, gemma_path):
    tok = benchmark.pedantic(Tokenizer.from_gguf, args=(gemma_path,), rounds=3, iterations=1)
    assert tok.n_vocab == 262144


@pytest.mark.parametrize("fixture", ["gemma_tok", "smollm2_tok"])
@pytest.mark.parametrize("cache", ["cold", "warm"])
def test_bench_encode_english(benchmark, request, english, fixture, cache):
    tok = request.getfixturevalue(fixture)
    size = len(english.encode("utf-8"))
    setup = (lambda: tok._cache.clear()) if cache == "cold" else None
    if cache == "warm":
        tok.encode(english)
    ids = benchmark.pedantic(tok.encode, args=(english,), setup=setup, rounds=3, iterations=1)
    if benchmark.stats is not None:  # None under --benchmark-disable, where the call runs once unmeasured
        benchmark.extra_info["MB/s (best round)"] = round(size / benchmark.stats.stats.min / 1e6, 2)
    assert tok.decode(ids, remove_special=True) == english
