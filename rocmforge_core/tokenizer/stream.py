"""Streaming detokenization: text comes out as tokens arrive, never cutting a multi-byte UTF-8 character."""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rocmforge_core.tokenizer.tokenizer import Tokenizer


class StreamDecoder:
    """Feed token ids one at a time with ``add``; each call returns the text completed so far.

    Bytes of a character split over several tokens (byte-fallback or byte-level BPE pieces) are held until the
    character is complete; ``flush`` returns what is left (an incomplete tail becomes U+FFFD). Pieces come out as
    llama.cpp's token_to_piece gives them, which is right for generated text continuing a prompt. With
    ``at_start=True`` the ids begin the text, and as in llama_detokenize the first piece loses the one leading
    space an SPM vocabulary's space prefix added. BPE's clean_spaces pass is not applied: it needs the following
    text."""

    def __init__(self, tokenizer: "Tokenizer", special: bool = False, at_start: bool = False) -> None:
        self._tok = tokenizer
        self._special = special
        self._strip_space = at_start and tokenizer.vocab.add_space_prefix
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def add(self, token_id: int) -> str:
        piece = self._tok.token_to_piece(token_id, self._special)
        if self._strip_space:
            self._strip_space = False
            if piece[:1] == b" ":
                piece = piece[1:]
        return self._decoder.decode(piece)

    def flush(self) -> str:
        """The held-back bytes, if any, as text; the decoder can be reused afterwards."""
        return self._decoder.decode(b"", final=True)
