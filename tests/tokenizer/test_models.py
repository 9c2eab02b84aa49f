"""Rules of the merge loops on small hand-made vocabularies: what llama.cpp's code does, case by case."""

from __future__ import annotations

import numpy as np

from rocmforge_core.tokenizer import Tokenizer

BYTES = [f"<0x{b:02X}>" for b in range(256)]


def _spm(tokens_scores: dict[str, float], control: tuple[str, ...] = (), **extra) -> Tokenizer:
    tokens = ["<unk>", "<s>", "</s>", *BYTES, *tokens_scores, *control]
    scores = [0.0] * (3 + 256) + list(tokens_scores.values()) + [0.0] * len(control)
    types = [2, 3, 3] + [6] * 256 + [1] * len(tokens_scores) + [3] * len(control)
    md = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens,
          "tokenizer.ggml.scores": np.array(scores, dtype=np.float32),
          "tokenizer.ggml.token_type": np.array(types, dtype=np.int32), "tokenizer.ggml.add_space_prefix": False,
          **extra}
    return Tokenizer.from_metadata(md)


def _texts(tok: Tokenizer, text: str) -> list[str]:
    return [tok.token_text(i) for i in tok.encode(text, add_special=False)]


def test_spm_best_score_first_ties_leftmost():
    tok = _spm({"a": -5, "b": -5, "c": -5, "ab": -1, "bc": -1})
    assert _texts(tok, "abc") == ["ab", "c"]    # a tie: the leftmost pair merges
    tok = _spm({"a": -5, "b": -5, "c": -5, "ab": -1, "bc": -0.9})
    assert _texts(tok, "abc") == ["a", "bc"]    # bc scores higher
    tok = _spm({"a": -5, "b": -5, "c": -5, "ab": -1, "bc": -0.9, "abc": -3})
    assert _texts(tok, "abc") == ["abc"]        # a+bc is a token: merging goes on whatever its score


def test_spm_byte_fallback_and_space_escape():
    tok = _spm({"\u2581": -1, "h": -2, "i": -2, "hi": -1, "\u2581hi": -0.5})
    assert _texts(tok, "hi hi\u00e9") == ["hi", "\u2581hi", "<0xC3>", "<0xA9>"]
    assert tok.decode(tok.encode("hi hi\u00e9", add_special=False)) == "hi hi\u00e9"


def test_spm_word_split_keeps_bridging_tokens():
    """'x▁y' spans the boundary before '▁y': the word cache must not cut it off."""
    tok = _spm({"\u2581": -3, "x": -3, "y": -3, "\u2581y": -2, "x\u2581y": -1})
    assert _texts(tok, "x y") == ["x\u2581y"]
    assert _texts(tok, "z y") == ["<0x7A>", "\u2581y"]


def test_special_tokens_split_longest_first():
    """llama.cpp splits out each special token in turn, longest first, so "bcd" wins over an earlier "ab"."""
    tok = _spm({"a": -1, "\u2581": -1}, control=("ab", "bcd", "<x>"))
    ab, bcd, x = (tok.token_id(t) for t in ("ab", "bcd", "<x>"))
    assert tok.encode("abcd", add_special=False, special=True) == [tok.token_id("a"), bcd]
    assert tok.encode("ab<x>ab", add_special=False, special=True) == [ab, x, ab]
    assert x not in tok.encode("<x>", add_special=False)


def test_phi3_special_tokens_eat_following_spaces():
    """llama.cpp gives phi-3's special tokens the rstrip attribute (by general.name)."""
    tok = _spm({"a": -1, "\u2581": -2, "\u2581a": -0.5}, control=("<|end|>",), **{"general.name": "Phi3"})
    end, a, space_a = tok.token_id("<|end|>"), tok.token_id("a"), tok.token_id("\u2581a")
    assert tok.encode("<|end|>  a", add_special=False, special=True) == [end, a]
    plain = _spm({"a": -1, "\u2581": -2, "\u2581a": -0.5}, control=("<|end|>",))
    assert plain.encode("<|end|> a", add_special=False, special=True) == [end, space_a]


def test_gemma4_bpe():
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", *BYTES, "\n", "\n\n", "\u2581", "a", "b", "ab", "\u2581ab",
              "h", "i", "hi"]
    md = {"tokenizer.ggml.model": "gemma4", "tokenizer.ggml.tokens": tokens,
          "tokenizer.ggml.merges": ["a b", "\u2581 ab", "h i"],
          "tokenizer.ggml.token_type": np.array([3, 3, 3, 2] + [6] * 256 + [1] * 10, dtype=np.int32),
          "tokenizer.ggml.bos_token_id": 2, "tokenizer.ggml.eos_token_id": 1, "tokenizer.ggml.add_bos_token": False}
    tok = Tokenizer.from_metadata(md)
    assert tok.add_bos  # llama.cpp forces BOS for Gemma 4
    ids = tok.encode("ab ab\n\n\nhi z")
    assert [tok.token_text(i) for i in ids] == [
        "<bos>", "ab", "\u2581ab", "\n", "\n", "\n", "hi", "\u2581", "<0x7A>"]
    assert [tok.token_text(i) for i in tok.encode("\n\n", add_special=False)] == ["\n\n"]  # a newline-run token
    assert tok.decode(ids, remove_special=True) == "ab ab\n\n\nhi z"
