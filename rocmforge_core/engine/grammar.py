"""Constrained generation with llguidance: grammars compiled against the GGUF's vocabulary, and a ``Constraint``
per sequence that gives the ``sample`` op its allowed-token mask.

llguidance (MIT, Rust, no torch) takes Lark grammars, regular expressions and JSON schemas; llama.cpp's GBNF is
converted to Lark by its ``gbnf_to_lark``. Its tokenizer is built here from rocmforge's own (the GGUF
``tokenizer.*`` metadata): each token's bytes, control tokens marked with a leading 0xFF as llguidance expects,
every end-of-generation id as an end token (a finished grammar lets the model end its turn), and encoding
without SPM's leading space, since llguidance tokenizes text that continues a generation.

A ``Constraint`` holds the mask of the next token, computed as soon as the previous token is known (``accept``),
so a step never waits for it; once the grammar can take no more tokens the sequence ends.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np

from rocmforge_core.errors import RocmforgeError
from rocmforge_core.ops.sample import mask_words

# The kinds of grammar a request may give, as llguidance's ``grammar_from`` names them.
KINDS = ("json_schema", "regex", "lark", "gbnf", "choice")


class GrammarError(RocmforgeError):
    """A grammar, regex or JSON schema that does not compile; the message names the problem."""


def _llguidance():
    try:
        import llguidance
    except ImportError:
        raise GrammarError("structured output needs the llguidance package: pip install 'rocmforge[serve]'") from None
    return llguidance


class _Vocabulary:
    """What llguidance's TokenizerWrapper reads of a tokenizer: token bytes, BOS/EOS, and encoding."""

    def __init__(self, tokenizer, n_vocab: int):
        self._tok = tokenizer
        self.eos_token_id = tokenizer.eos_id
        self.bos_token_id = tokenizer.bos_id
        self.tokens = [self._bytes(i) for i in range(tokenizer.n_vocab)] + [b""] * (n_vocab - tokenizer.n_vocab)
        self.special_token_ids = [i for i in range(tokenizer.n_vocab) if tokenizer.is_control(i)]

    def _bytes(self, i: int) -> bytes:
        if self._tok.is_control(i):
            return b"\xff" + self._tok.token_text(i).encode("utf-8")
        return self._tok.token_to_piece(i)

    def __call__(self, text) -> list[int]:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return self._tok.encode(text, add_special=False, space_prefix=False)


class Grammars:
    """Compiles grammars for one model: its llguidance tokenizer is built on first use (about half a second for a
    50k vocabulary) and shared by every request."""

    def __init__(self, tokenizer, n_vocab: int):
        self.tokenizer, self.n_vocab = tokenizer, n_vocab
        self._ll = None
        self._lock = threading.Lock()

    def _lltokenizer(self):
        with self._lock:
            if self._ll is None:
                llg = _llguidance()
                wrapper = llg.TokenizerWrapper(_Vocabulary(self.tokenizer, self.n_vocab))
                self._ll = llg.LLTokenizer(wrapper, n_vocab=self.n_vocab,
                                           eos_token=sorted(self.tokenizer.eog_ids) or None)
            return self._ll

    def constraint(self, kind: str, spec: Any) -> "Constraint":
        """A fresh constraint for one sequence; GrammarError when the grammar does not compile."""
        llg = _llguidance()
        if kind not in KINDS:
            raise GrammarError(f"unknown grammar kind {kind!r}; kinds are {', '.join(KINDS)}")
        text = spec if isinstance(spec, str) else json.dumps(spec)
        try:
            grammar = llg.grammar_from(kind, text)
        except ValueError as exc:
            raise GrammarError(f"the {kind.replace('_', ' ')} is not valid: {exc}") from None
        tokenizer = self._lltokenizer()
        matcher = llg.LLMatcher(tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise GrammarError(f"the {kind.replace('_', ' ')} is not valid: {_first_line(matcher.get_error())}")
        return Constraint(matcher, self.n_vocab)


def _first_line(message: str) -> str:
    return " ".join(message.strip().splitlines()[:3]).strip()


class Constraint:
    """One sequence's grammar state: the mask of the next token (``mask``) and the tokens it took."""

    def __init__(self, matcher, n_vocab: int):
        self._matcher, self._words = matcher, mask_words(n_vocab)
        self.mask = self._compute()

    def _compute(self) -> np.ndarray:
        words = np.frombuffer(self._matcher.compute_bitmask(), dtype="<i4")[:self._words]
        if len(words) < self._words:  # tokens past llguidance's vocabulary are never allowed
            words = np.concatenate([words, np.zeros(self._words - len(words), dtype="<i4")])
        return words.astype(np.int32)

    @property
    def finished(self) -> bool:
        """The grammar takes no more tokens: the sequence is complete."""
        return self._matcher.is_stopped()

    def accept(self, token: int) -> None:
        """Advance past ``token`` (one the mask allowed) and compute the next mask now, before the next step."""
        if not self._matcher.consume_token(token):
            raise GrammarError(f"token {token} does not fit the grammar: {_first_line(self._matcher.get_error())}")
        if not self.finished:
            self.mask = self._compute()
