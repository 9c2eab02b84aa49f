"""Special tokens, BOS/EOS, byte fallback, vocab-only files and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from rocmforge_core.errors import RocmforgeError
from rocmforge_core.gguf import open_gguf
from rocmforge_core.tokenizer import Tokenizer, TokenizerError


def test_bos_eos_follow_the_model_flags(gemma_tok, smollm2_tok, vocab_tok):
    assert gemma_tok.add_bos and gemma_tok.bos_id == 2 and gemma_tok.eos_id == 1
    assert gemma_tok.encode("Hello")[0] == 2 and gemma_tok.encode("Hello", add_special=False) == [9259]
    assert not smollm2_tok.add_bos and smollm2_tok.encode("Hello") == [19556]
    assert smollm2_tok.bos_id == 1 and smollm2_tok.eos_id == 2
    assert vocab_tok("llama-bpe").encode("Hi")[0] == 128000  # llama3 pre-tokenizer adds BOS by default
    assert gemma_tok.encode("") == [2] and gemma_tok.encode("", add_special=False) == []


def test_end_of_generation_tokens(gemma_tok, smollm2_tok):
    eot = gemma_tok.token_id("<end_of_turn>")
    assert gemma_tok.eot_id == eot and {1, eot} <= gemma_tok.eog_ids and gemma_tok.is_eog(eot)
    im_end = smollm2_tok.token_id("<|im_end|>")
    assert smollm2_tok.is_eog(im_end) and smollm2_tok.is_eog(smollm2_tok.eos_id)
    assert not smollm2_tok.is_eog(smollm2_tok.token_id("Hello"))


def test_special_texts_parse_only_when_asked(smollm2_tok, gemma_tok):
    start, end = smollm2_tok.token_id("<|im_start|>"), smollm2_tok.token_id("<|im_end|>")
    ids = smollm2_tok.encode("<|im_start|>user\nHi<|im_end|>", special=True)
    assert ids[0] == start and ids[-1] == end and smollm2_tok.decode(ids, special=True) == \
        "<|im_start|>user\nHi<|im_end|>"
    plain = smollm2_tok.encode("<|im_start|>user", special=False)
    assert start not in plain and len(plain) > 2
    assert smollm2_tok.decode(ids) == "user\nHi"  # control tokens print nothing unless special=True
    turn = gemma_tok.token_id("<start_of_turn>")
    assert gemma_tok.encode("<start_of_turn>model", add_special=False, special=True)[0] == turn


def test_user_defined_tokens_always_split(gemma_tok):
    """Gemma's whitespace runs are user-defined tokens, which llama.cpp matches even with special=False."""
    assert gemma_tok.encode("a\n\n\nb", add_special=False) == [
        gemma_tok.token_id("a"), gemma_tok.token_id("\n\n\n"), gemma_tok.token_id("b")]


def test_byte_fallback_and_multibyte_decode(vocab_tok):
    spm = vocab_tok("llama-spm")
    text = "\U0001F999"  # llama emoji: no token, four <0xXX> byte tokens
    ids = spm.encode(text, add_special=False)
    assert [spm.token_text(i) for i in ids][-4:] == ["<0xF0>", "<0x9F>", "<0xA6>", "<0x99>"]
    assert spm.decode(ids) == text


def test_vocab_only_file_loads(testdata):
    with open_gguf(testdata / "vocab" / "ggml-vocab-qwen2.gguf") as f:
        assert not f.tensors
        tok = Tokenizer.from_metadata(f.metadata)
    assert tok.n_vocab == 151936 and tok.decode(tok.encode("Hello, world")) == "Hello, world"


def _metadata(testdata, name="qwen2") -> dict:
    with open_gguf(testdata / "vocab" / f"ggml-vocab-{name}.gguf") as f:
        return dict(f.metadata)


def test_unknown_pre_tokenizer_is_an_error(testdata):
    md = _metadata(testdata)
    md["tokenizer.ggml.pre"] = "no-such-pre"
    with pytest.raises(TokenizerError, match="unknown pre-tokenizer.*no-such-pre"):
        Tokenizer.from_metadata(md)


@pytest.mark.parametrize("change, message", [
    ({"tokenizer.ggml.model": "wordpiece-x"}, "unsupported tokenizer model"),
    ({"tokenizer.ggml.model": None}, "no tokenizer"),
    ({"tokenizer.ggml.tokens": None}, "no token list"),
    ({"tokenizer.ggml.merges": None}, "needs tokenizer.ggml.merges"),
    ({"tokenizer.ggml.token_type": np.ones(3, dtype=np.int32)}, "token_type has 3 entries"),
    # glm4 is a pre-tokenizer without llama.cpp's default BOS id
    ({"tokenizer.ggml.pre": "glm4", "tokenizer.ggml.bos_token_id": None, "tokenizer.ggml.add_bos_token": True},
     "add_bos_token is true"),
])
def test_bad_metadata_is_a_clear_error(testdata, change, message):
    md = _metadata(testdata)
    for key, value in change.items():
        if value is None:
            md.pop(key, None)
        else:
            md[key] = value
    with pytest.raises(TokenizerError, match=message) as info:
        Tokenizer.from_metadata(md)
    assert isinstance(info.value, RocmforgeError)


def test_bad_calls_are_clear_errors(smollm2_tok):
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        smollm2_tok.decode([5, 10**6])
    with pytest.raises(TokenizerError, match="needs a str"):
        smollm2_tok.encode(b"bytes")
    with pytest.raises(TokenizerError, match="lone surrogate"):
        smollm2_tok.encode("ok \udc80")
