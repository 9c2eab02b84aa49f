"""llama.cpp's tokenizer suite files in ../shared/testdata/vocab."""

from __future__ import annotations

VOCABS = ["llama-spm", "phi-3", "llama-bpe", "qwen2", "gpt-2", "deepseek-coder"]


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
