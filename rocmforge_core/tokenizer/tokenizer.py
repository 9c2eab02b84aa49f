"""Tokenizer: encode/decode driven only by GGUF ``tokenizer.*`` metadata, matching llama.cpp's llama_tokenize and
llama_detokenize (src/llama-vocab.cpp)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rocmforge_core.tokenizer.errors import TokenizerError
from rocmforge_core.tokenizer.merge import bpe_merge, spm_merge
from rocmforge_core.tokenizer.pretokenize import PreTokenizer
from rocmforge_core.tokenizer.vocab import (BPE, BYTE, CONTROL, LSTRIP, NORMAL, RSTRIP, SPM, UNKNOWN,
                                            USER_DEFINED, Vocab, load_vocab)

_SPACE_MARK = "\u2581"  # SentencePiece's escaped space
_C_SPACE = " \t\n\v\f\r"  # C isspace(), used by llama.cpp's lstrip/rstrip of special tokens
_WORD = re.compile("\u2581*[^\u2581]+|\u2581+")
_CACHE_LIMIT = 1 << 17
# more tokens than this bridging a space boundary and the SPM word split is not worth it (see _words)
_BRIDGING_LIMIT = 64


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map (unicode.cpp unicode_byte_to_utf8_map)."""
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table, n = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return table


_BYTE_TO_CHAR = _bytes_to_unicode()
_CHAR_TO_BYTE = {c: b for b, c in _BYTE_TO_CHAR.items()}
_BYTE_ENCODE = str.maketrans({chr(b): c for b, c in _BYTE_TO_CHAR.items()})


class Tokenizer:
    """Text <-> token ids for one GGUF vocabulary ("llama" SPM, "gpt2" byte-level BPE, "gemma4" BPE)."""

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab
        v = vocab
        self._tokens = v.tokens
        self._attrs = v.attrs
        self._t2id = v.token_to_id
        self._cache: dict[str, list[int]] = {}
        self._pieces: dict[bool, list[bytes | None]] = {False: [None] * len(v), True: [None] * len(v)}
        if v.kind == BPE:
            self._pre = PreTokenizer(v.pre)
        # special tokens in llama.cpp's partition order; user-defined ones are split out even without special=True
        self._specials_all = [(i, v.tokens[i], v.attrs[i]) for i in v.special_ids]
        self._specials_plain = [s for s in self._specials_all if not s[2] & (CONTROL | UNKNOWN)]
        self._groups = {special: _group_by_first_char(specials)
                        for special, specials in ((True, self._specials_all), (False, self._specials_plain))}
        self._byte_ids = [self._byte_token(b) for b in range(256)]
        # tokens that would join text across a space boundary (see _words); SPM joins tokens, gemma4 merges
        self._bridging: list[str] | None = []
        if v.kind == SPM or not v.byte_encode:
            candidates = v.tokens if v.kind == SPM else [a + b for a, b in v.merges]
            bridging = sorted({t for t in candidates if _SPACE_MARK in t.lstrip(_SPACE_MARK)})
            self._bridging = bridging if len(bridging) <= _BRIDGING_LIMIT else None

    # -- construction ----------------------------------------------------------------------------------------
    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> "Tokenizer":
        """A tokenizer from a GGUF metadata mapping (``open_gguf(path).metadata``)."""
        return cls(load_vocab(metadata))

    @classmethod
    def from_gguf(cls, path: str | os.PathLike) -> "Tokenizer":
        """A tokenizer from a GGUF file; vocab-only files (no tensors) work too."""
        from rocmforge_core.gguf import open_gguf

        with open_gguf(path) as f:
            return cls.from_metadata(f.metadata)

    # -- properties ------------------------------------------------------------------------------------------
    @property
    def n_vocab(self) -> int:
        return len(self._tokens)

    @property
    def bos_id(self) -> int | None:
        return self.vocab.bos_id

    @property
    def eos_id(self) -> int | None:
        return self.vocab.eos_id

    @property
    def eot_id(self) -> int | None:
        return self.vocab.eot_id

    @property
    def eog_ids(self) -> frozenset[int]:
        """Ids that end generation (EOS, EOT, EOM and llama.cpp's text-detected ones)."""
        return self.vocab.eog_ids

    @property
    def add_bos(self) -> bool:
        return self.vocab.add_bos

    @property
    def add_eos(self) -> bool:
        return self.vocab.add_eos

    def is_eog(self, token_id: int) -> bool:
        return token_id in self.vocab.eog_ids

    def is_control(self, token_id: int) -> bool:
        return bool(self._attrs[self._check_id(token_id)] & CONTROL)

    def token_text(self, token_id: int) -> str:
        """The token's vocabulary string as stored in the file."""
        return self._tokens[self._check_id(token_id)]

    def token_id(self, text: str) -> int | None:
        """The id of the token whose vocabulary string is ``text``, or None."""
        return self._t2id.get(text)

    def __repr__(self) -> str:
        v = self.vocab
        kind = "SPM" if v.kind == SPM else f"BPE/{v.pre}"
        return f"Tokenizer({v.model!r}, {kind}, n_vocab={len(v)})"

    # -- encoding --------------------------------------------------------------------------------------------
    def encode(self, text: str, add_special: bool = True, special: bool = False,
               space_prefix: bool = True) -> list[int]:
        """Token ids of ``text``, as llama.cpp's llama_tokenize(add_special, parse_special=special).

        add_special adds BOS/EOS as the model's add_bos_token/add_eos_token say; special=True turns control-token
        texts such as "<|im_start|>" into their ids (user-defined tokens are always matched, as in llama.cpp).
        space_prefix=False leaves out SPM's added leading space: text that continues a generation (llguidance)."""
        if not isinstance(text, str):
            raise TokenizerError(f"encode() needs a str, got {type(text).__name__}")
        try:
            return self._encode(text, add_special, special, space_prefix)
        except UnicodeEncodeError as exc:
            raise TokenizerError(f"the text holds a lone surrogate {exc.object[exc.start]!r}, "
                                 "which is not valid Unicode") from None

    def _encode(self, text: str, add_special: bool, special: bool, space_prefix: bool = True) -> list[int]:
        v = self.vocab
        out: list[int] = []
        fragments = self._partition(text, special) if text else []
        if add_special and v.add_bos:
            out.append(v.bos_id)
        if v.kind == SPM:
            prev_special = True
            for frag in fragments:
                if frag.__class__ is int:
                    out.append(frag)
                    prev_special = True
                    continue
                if v.add_space_prefix and prev_special and space_prefix:
                    frag = " " + frag
                self._encode_words(self._words(frag.replace(" ", _SPACE_MARK)), out)
                prev_special = False
        else:
            for frag in fragments:
                if frag.__class__ is int:
                    out.append(frag)
                    continue
                if v.escape_whitespaces:
                    frag = frag.replace(" ", _SPACE_MARK)
                self._encode_words(self._pre.split(frag), out)
        if add_special and v.add_eos:
            out.append(v.eos_id)
        return out

    def _partition(self, text: str, special: bool) -> list[str | int]:
        """llama.cpp's tokenizer_st_partition: split out special-token texts, longest token first."""
        fragments: list[str | int] = [text]
        present = _occurring(text, self._groups[special])
        if not present:
            return fragments
        for tid, tok, attr in (self._specials_all if special else self._specials_plain):
            if tok not in present:
                continue
            out: list[str | int] = []
            for frag in fragments:
                if frag.__class__ is int or tok not in frag:
                    out.append(frag)
                elif not attr & (LSTRIP | RSTRIP):
                    parts = frag.split(tok)
                    if parts[0]:
                        out.append(parts[0])
                    for part in parts[1:]:
                        out.append(tid)
                        if part:
                            out.append(part)
                else:
                    self._split_stripping(frag, tid, tok, attr, out)
            fragments = out
        return fragments

    @staticmethod
    def _split_stripping(frag: str, tid: int, tok: str, attr: int, out: list[str | int]) -> None:
        pos = 0
        while (match := frag.find(tok, pos)) >= 0:
            left = frag[pos:match]
            if attr & LSTRIP:
                left = left.rstrip(_C_SPACE)
            if left:
                out.append(left)
            out.append(tid)
            pos = match + len(tok)
            if attr & RSTRIP:
                while pos < len(frag) and frag[pos] in _C_SPACE:
                    pos += 1
        if pos < len(frag):
            out.append(frag[pos:])

    def _words(self, text: str) -> list[str]:
        """Split whitespace-escaped text before each run of U+2581 that follows other characters.

        No merge can cross such a boundary unless some token (SPM) or merge result (gemma4) spans it, so the
        merge result is unchanged while each word can be cached. Boundaries covered by an occurrence of such a
        bridging token are kept joined; with too many bridging tokens the text stays whole."""
        if self._bridging is None:
            return [text]
        words = _WORD.findall(text)
        if len(words) < 2 or not self._bridging:
            return words
        unsafe: set[int] = set()
        for tok in self._bridging:
            start = text.find(tok)
            while start >= 0:
                unsafe.update(range(start + 1, start + len(tok)))
                start = text.find(tok, start + 1)
        if not unsafe:
            return words
        joined, pos = [], 0
        for w in words:
            if joined and pos in unsafe:
                joined[-1] += w
            else:
                joined.append(w)
            pos += len(w)
        return joined

    def _encode_words(self, words: list[str], out: list[int]) -> None:
        cache = self._cache
        word_ids = self._spm_word if self.vocab.kind == SPM else self._bpe_word
        for w in words:
            ids = cache.get(w)
            if ids is None:
                ids = word_ids(w)
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[w] = ids
            out.extend(ids)

    def _spm_word(self, word: str) -> list[int]:
        ids = []
        t2id = self._t2id
        for sym in spm_merge(word, t2id, self.vocab.scores):
            tid = t2id.get(sym)
            if tid is not None:
                ids.append(tid)
            else:
                ids.extend(self._byte_id(b) for b in sym.encode("utf-8"))
        return ids

    def _bpe_word(self, word: str) -> list[int]:
        if self.vocab.byte_encode:
            word = word.encode("utf-8").decode("latin-1").translate(_BYTE_ENCODE)
        elif "\n" not in word:  # gemma4: split lines further where no merge can cross (see _words)
            return [i for part in self._words(word) for i in self._bpe_symbols(part)]
        return self._bpe_symbols(word)

    def _bpe_symbols(self, word: str) -> list[int]:
        v = self.vocab
        t2id = self._t2id
        if v.ignore_merges and word in t2id:
            return [t2id[word]]
        if not v.byte_encode and word.strip("\n") == "" and word in t2id:
            return [t2id[word]]  # llama.cpp's gemma4 newline-run fix
        ids = []
        for sym in bpe_merge(word, v.merges):
            tid = t2id.get(sym)
            if tid is not None:
                ids.append(tid)
                continue
            for b in sym.encode("utf-8"):
                if v.byte_encode:
                    tid = t2id.get(chr(b)) if b < 0x80 else None
                else:
                    tid = t2id.get(f"<0x{b:02X}>")
                if tid is not None:  # llama.cpp drops bytes it has no token for
                    ids.append(tid)
        return ids

    def _byte_token(self, b: int) -> int | None:
        """llama.cpp's byte_to_token for SPM: the <0xXX> token, else the one-character token."""
        tid = self._t2id.get(f"<0x{b:02X}>")
        if tid is None and b < 0x80:
            tid = self._t2id.get(chr(b))
        return tid

    def _byte_id(self, b: int) -> int:
        tid = self._byte_ids[b]
        if tid is None:
            if self.vocab.unk_id is None:
                raise TokenizerError(f"the vocabulary has no byte-fallback token <0x{b:02X}> and no unknown token")
            return self.vocab.unk_id
        return tid

    # -- decoding --------------------------------------------------------------------------------------------
    def _check_id(self, token_id: int) -> int:
        if not 0 <= token_id < len(self._tokens):
            raise TokenizerError(f"token id {token_id} is outside the vocabulary (0..{len(self._tokens) - 1})")
        return token_id

    def token_to_piece(self, token_id: int, special: bool = False) -> bytes:
        """The bytes one token stands for (llama_token_to_piece); control tokens give b"" unless special."""
        cache = self._pieces[special]
        piece = cache[self._check_id(token_id)]
        if piece is None:
            piece = cache[token_id] = self._piece(token_id, special)
        return piece

    def _piece(self, tid: int, special: bool) -> bytes:
        attr, text, v = self._attrs[tid], self._tokens[tid], self.vocab
        if attr & (UNKNOWN | CONTROL):
            return text.encode("utf-8") if special else b""
        if attr & USER_DEFINED:
            return text.encode("utf-8")
        if attr & NORMAL:
            if v.kind == SPM or v.escape_whitespaces:
                return text.replace(_SPACE_MARK, " ").encode("utf-8")
            out = bytearray()
            for c in text:
                b = _CHAR_TO_BYTE.get(c)
                if b is None:
                    out += b"[UNK_BYTE_0x" + c.encode("utf-8").hex().encode() + text.encode("utf-8") + b"]"
                else:
                    out.append(b)
            return bytes(out)
        if attr & BYTE:
            return bytes([int(text[3:5], 16)])
        return b""

    def decode_bytes(self, ids: Sequence[int], special: bool = False, remove_special: bool = False) -> bytes:
        """llama_detokenize as bytes: pieces joined, SPM's prefix space dropped, BPE clean-up applied."""
        v = self.vocab
        ids = list(ids)
        remove_space = v.add_space_prefix
        if remove_special and v.add_bos and ids and ids[0] == v.bos_id:
            remove_space = False
            ids = ids[1:]
        if remove_special and v.add_eos and ids and ids[-1] == v.eos_id:
            ids = ids[:-1]
        parts = []
        for tid in ids:
            piece = self.token_to_piece(tid, special)
            if remove_space and piece[:1] == b" ":
                piece = piece[1:]
            remove_space = False
            parts.append(piece)
        data = b"".join(parts)
        return _clean_spaces(data) if v.clean_spaces else data

    def decode(self, ids: Sequence[int], special: bool = False, remove_special: bool = False) -> str:
        """Text of ``ids`` (llama_detokenize); invalid UTF-8 becomes U+FFFD."""
        return self.decode_bytes(ids, special, remove_special).decode("utf-8", "replace")

    def stream(self, special: bool = False, at_start: bool = False) -> "StreamDecoder":
        """An incremental decoder for generated tokens; ``at_start``: the ids begin the text (see StreamDecoder)."""
        from rocmforge_core.tokenizer.stream import StreamDecoder

        return StreamDecoder(self, special, at_start)

    # -- chat ------------------------------------------------------------------------------------------------
    @property
    def chat_template(self) -> str:
        """The file's tokenizer.chat_template, else the built-in one for its architecture (Gemma's for gemma*,
        else ChatML)."""
        from rocmforge_core.tokenizer.chat import default_template

        return self.vocab.chat_template or default_template(self.vocab.architecture)

    def apply_chat_template(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True,
                            template: str | None = None, **kwargs: Any) -> str:
        """The prompt text for ``messages`` rendered with the model's tokenizer.chat_template (or ``template``).

        Files without a template get a built-in one for their architecture (Gemma's for gemma*, else ChatML).
        The result still contains the BOS text where the template writes it: encode it with
        add_special=False, special=True."""
        from rocmforge_core.tokenizer.chat import render_chat

        v = self.vocab
        template = template or self.chat_template
        bos = self._tokens[v.bos_id] if v.bos_id is not None else ""
        eos = self._tokens[v.eos_id] if v.eos_id is not None else ""
        return render_chat(template, messages, add_generation_prompt=add_generation_prompt, bos_token=bos,
                           eos_token=eos, **kwargs)


def _group_by_first_char(specials: list[tuple[int, str, int]]) -> dict[str, tuple[frozenset[str], list[int]]]:
    groups: dict[str, set[str]] = {}
    for _, tok, _ in specials:
        groups.setdefault(tok[0], set()).add(tok)
    return {c: (frozenset(toks), sorted({len(t) for t in toks})) for c, toks in groups.items()}


def _occurring(text: str, groups: dict[str, tuple[frozenset[str], list[int]]]) -> set[str]:
    """The special-token texts that occur in ``text``. Per first character, either search each token (few tokens)
    or look at every position of that character (many tokens, e.g. gemma's 6,000 "<...>" control tokens)."""
    present: set[str] = set()
    for c, (toks, lengths) in groups.items():
        count = text.count(c)
        if not count:
            continue
        if count * len(lengths) * 500 < len(toks) * len(text):
            pos = text.find(c)
            while pos >= 0:
                for n in lengths:
                    if text[pos:pos + n] in toks:
                        present.add(text[pos:pos + n])
                pos = text.find(c, pos + 1)
        else:
            present.update(t for t in toks if t in text)
    return present


def _clean_spaces(data: bytes) -> bytes:
    """llama_detokenize's clean_spaces passes, ported literally (they read the buffer they rewrite)."""
    text = bytearray(data)
    # pass 1: " ?", " !", " .", " ," lose the space
    total1, total = len(text), (1 if text else 0)
    for i in range(1, total1):
        x = text[i]
        if text[i - 1] == 0x20 and x in b"?!.,":
            total -= 1
        text[total] = x
        total += 1
    # pass 2: a lone apostrophe between spaces loses both spaces
    total2, total = total, (1 if total else 0)
    i = 1
    while i < total2:
        x = text[i]
        if x == 0x27 and i + 1 < total2 and text[i - 1] == 0x20 and text[i + 1] == 0x20:
            total -= 1
            i += 1
            text[i] = 0
        text[total] = x
        total += 1
        i += 1
    # pass 3: " 's", " 'm", " 're", " 've" lose the space
    total3, total = total, (1 if total else 0)
    for i in range(1, total3):
        x = text[i]
        if text[i - 1] == 0x20 and x == 0x27 and i + 1 < total3:
            x1 = text[i + 1]
            if x1 in b"sm":
                total -= 1
            elif x1 not in b"td" and i + 2 < total3:
                x2 = text[i + 2]
                if (x1, x2) in ((0x72, 0x65), (0x76, 0x65)):
                    total -= 1
        text[total] = x
        total += 1
    return bytes(text[:total])
