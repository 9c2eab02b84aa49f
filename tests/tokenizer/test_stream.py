"""Streaming detokenization never emits part of a multi-byte character."""

from __future__ import annotations

import pytest

TEXT = "Grüße 🦙 Ελληνικά 我想在apple工作 — ok"


@pytest.mark.parametrize("fixture", ["gemma_tok", "smollm2_tok"])
def test_stream_matches_decode_and_keeps_characters_whole(request, fixture):
    tok = request.getfixturevalue(fixture)
    ids = tok.encode(TEXT, add_special=False)
    stream = tok.stream()
    chunks = [stream.add(i) for i in ids] + [stream.flush()]
    assert "".join(chunks) == TEXT
    assert all("\ufffd" not in c for c in chunks)
    assert any(c == "" for c in chunks[:-1]), "some token should end inside a character"


def test_stream_spm_prefix_space(vocab_tok):
    """Generated text continues the prompt and keeps its spaces; a stream of ids that begin the text drops the
    prefix space the tokenizer added, once, as decode does."""
    tok = vocab_tok("llama-spm")
    ids = tok.encode("Hello world", add_special=False)
    assert [tok.token_text(i) for i in ids] == ["\u2581Hello", "\u2581world"]
    continuation = tok.stream()
    assert "".join(continuation.add(i) for i in ids) == " Hello world"
    from_start = tok.stream(at_start=True)
    assert "".join(from_start.add(i) for i in ids) == "Hello world" == tok.decode(ids)


def test_stream_flush_replaces_an_incomplete_tail(vocab_tok):
    tok = vocab_tok("llama-spm")
    ids = tok.encode("\U0001F999", add_special=False)
    stream = tok.stream(at_start=True)
    assert "".join(stream.add(i) for i in ids[:-1]) == ""
    assert stream.flush() == "\ufffd"
