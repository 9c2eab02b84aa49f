"""Every pre-tokenizer against an independent implementation: Hugging Face ``tokenizers`` (Oniguruma, real
Unicode classes) running llama.cpp's regex list as a sequence of isolating splits. For ordinary text llama.cpp's
collapsed-category matching and true Unicode matching agree, so both must give the same words."""

from __future__ import annotations

import re

import pytest

from rocmforge_core.tokenizer.pretokenize import GPT2, REGEXES, PreTokenizer
from tests.tokenizer.suite import vocab_cases

tokenizers = pytest.importorskip("tokenizers", reason="Hugging Face tokenizers is the independent cross-check")

EXTRA = [
    # deepseek-llm's letter ranges and compatibility letters (escaped: NFC would fold KELVIN SIGN into "K")
    "\u1f5f\u1f7d \u1fd3 \u1fdb \u2126hm 5\u212a \u212d \u212bngstr\u00d6m \u00b5s \ufb01ne \uff26\uff55\uff4c\uff4c\uff01 \u1fbe",
    "def f(x):\n\treturn x**2  # 1234567 ½ ³ Ⅻ\r\n\r\n  \n",
    "I'M HERE, you'll see; they've 'quoted' it's ...!!! ??? $100 + <tag> ^_^ ~ | ` @ #",
    "日本語のテキスト、中文文本。한국어 텍스트 — हिन्दी, العربية، فارسی۔",
    "e\u0301 a\u0308 \u200d\u200b\u00a0x y\u2028",
]


def _hf(kind: str):
    from tokenizers import Regex, pre_tokenizers

    exprs = []
    for e in REGEXES[kind]:
        if e == GPT2:
            e += r"|\s+"  # llama.cpp's hand-written GPT-2 matcher ends with this fallback
        e = re.sub(r"(?<!\\)\$", r"\\z", e)  # ECMAScript '$' = end of input; Oniguruma's is end of line
        e = re.sub(r"\\u([0-9a-f]{4})|\\U([0-9a-f]{8})", lambda m: chr(int(m[1] or m[2], 16)), e)
        exprs.append(e)
    return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(e), behavior="isolated") for e in exprs])


@pytest.mark.parametrize("kind", sorted(REGEXES))
def test_pretokenizer_matches_unicode_regex(testdata, kind):
    texts = [t for t, _ in vocab_cases(testdata, "llama-bpe")] + EXTRA
    hf, ours = _hf(kind), PreTokenizer(kind)
    for text in texts:
        assert ours.split(text) == [w for w, _ in hf.pre_tokenize_str(text)], text


def test_words_cover_the_text():
    text = EXTRA[1] + EXTRA[3]
    for kind in REGEXES:
        assert "".join(PreTokenizer(kind).split(text)) == text


def test_whitespace_is_unicode_white_space():
    """Oniguruma's \\s misses U+0085, U+2003 and U+3000; llama.cpp (and this code) count every White_Space code
    point."""
    # GPT-2's matcher: "\s+(?!\S)" leaves the last space for the next word, NEL is whitespace, not punctuation
    assert PreTokenizer("gpt2").split(" \x85z") == [" ", "\x85", "z"]
    # deepseek-coder's "\s?\p{L}+": the collapsed text turns EM SPACE into 0x0B, which "\s" matches
    assert PreTokenizer("deepseek-coder").split("\u2003x\u3000y") == ["\u2003x", "\u3000y"]


def test_unassigned_code_points():
    """llama.cpp's hand-written GPT-2 matcher leaves unassigned code points (U+0378) out of every class, one piece
    each; its std::regex path (qwen2) counts them as "other" and groups them."""
    assert PreTokenizer("gpt2").split("a\u0378\u0378b") == ["a", "\u0378", "\u0378", "b"]
    assert PreTokenizer("qwen2").split("a\u0378\u0378b") == ["a", "\u0378\u0378", "b"]
