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


def test_stream_drops_spm_prefix_space_once(vocab_tok):
    tok = vocab_tok("llama-spm")
    ids = tok.encode("Hello world", add_special=False)
    stream = tok.stream()
    assert "".join(stream.add(i) for i in ids) == "Hello world" == tok.decode(ids)


def test_stream_flush_replaces_an_incomplete_tail(vocab_tok):
    tok = vocab_tok("llama-spm")
    ids = tok.encode("\U0001F999", add_special=False)
    stream = tok.stream()
    assert "".join(stream.add(i) for i in ids[:-1]) == ""
    assert stream.flush() == "\ufffd"
