"""Pre-tokenizer regex splits, as llama.cpp does them (src/llama-vocab.cpp llm_tokenizer_bpe, src/unicode.cpp
unicode_regex_split).

llama.cpp runs a list of regexes; each one splits every piece left by the previous one into its matches *and*
the unmatched gaps between them. Regexes that use Unicode classes (\\p{L}, \\p{N}, ...) run on a "collapsed"
text in which every non-ASCII code point is replaced by one marker character for its category, and the class is
rewritten to that marker plus its ASCII members. Doing the same here with the standard ``re`` module reproduces
llama.cpp's splits, quirks included, without a Unicode-class regex engine. The two patterns llama.cpp runs with
hand-written matchers (GPT-2's and Llama 3's) behave like the regex except for unassigned code points, which those
matchers never group: their patterns here exclude the unassigned marker from [^\\s\\p{L}\\p{N}], and each
unmatched code point becomes a piece of its own.
"""

from __future__ import annotations

import re
import unicodedata

# marker per category, as unicode.cpp's k_ucat_cpt; 0x0B stands for non-ASCII whitespace
_NUMBER, _LETTER, _PUNCT, _MARK, _SYMBOL, _OTHER, _SPACE = "\xd1", "\xd2", "\xd3", "\xd4", "\xd5", "\xd0", "\x0b"
# unassigned code points: like _OTHER (no class lists either) except in the hand-written matchers' patterns
_UNASSIGNED = "\xd6"
_CLASS = {
    "N": _NUMBER + "0-9",
    "L": _LETTER + "A-Za-z", "Lu": _LETTER + "A-Za-z", "Ll": _LETTER + "A-Za-z", "Lt": _LETTER + "A-Za-z",
    "Lm": _LETTER + "A-Za-z", "Lo": _LETTER + "A-Za-z",
    "P": _PUNCT + r"!-#%-*,-/:-;?-@\[-\]_\{\}",
    "M": _MARK,
    "S": _SYMBOL + r"\$\+<->\^`\|",
}
# Unicode White_Space (llama.cpp's unicode_set_whitespace)
_WHITESPACE = frozenset([*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029,
                         0x202F, 0x205F, 0x3000])

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
         r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN35 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
          r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# written as escapes: copying these characters literally risks NFC normalization (U+212A KELVIN SIGN -> "K")
_DEEPSEEK_LETTERS = (
    r"A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373"
    r"\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481"
    r"\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b"
    r"\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59"
    r"\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3"
    r"\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d"
    r"\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184"
    r"\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787"
    r"\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f"
    r"\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df"
    r"\U0001e900-\U0001e943")
_CJK = r"[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"

# pre-tokenizer kind -> llama.cpp's regex list
REGEXES: dict[str, list[str]] = {
    "default": [r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"],
    "llama3": [LLAMA3],
    "deepseek-llm": ["[\r\n]", r"\s?[" + _DEEPSEEK_LETTERS + "]+",
                     r"\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+", r"\s+$", _CJK, r"\p{N}+"],
    "deepseek-coder": ["[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _CJK, r"\p{N}"],
    "falcon": [r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"],
    "starcoder": [r"\p{N}", GPT2],
    "gpt2": [GPT2],
    "qwen2": [QWEN2],
    "qwen35": [QWEN35],
    "poro": [r" ?[^(\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+"],
    "gemma4": ["[^\\n]+|[\\n]+"],
}

_CUSTOM = {GPT2: GPT2 + r"|\s+", LLAMA3: LLAMA3}  # patterns llama.cpp matches by hand (see module docstring)
_UCAT = re.compile(r"\\p\{(\w+)\}")


def _category_marker(cp: int) -> str:
    if cp in _WHITESPACE:
        return _SPACE
    cat = unicodedata.category(chr(cp))
    return {"N": _NUMBER, "L": _LETTER, "P": _PUNCT, "M": _MARK, "S": _SYMBOL}.get(cat[0], _OTHER)


class _Collapse(dict):
    """str.translate table: non-ASCII code point -> category marker, filled on first sight. Unassigned code
    points get their own marker, which only the hand-written matchers' patterns treat differently from _OTHER."""

    def __init__(self) -> None:
        super().__init__((cp, cp) for cp in range(128))

    def __missing__(self, cp: int):
        if unicodedata.category(chr(cp)) == "Cn" and cp not in _WHITESPACE:
            value = _UNASSIGNED
        else:
            value = _category_marker(cp)
        self[cp] = value
        return value


_COLLAPSE = _Collapse()


def _compile(expr: str) -> tuple[re.Pattern, bool, bool]:
    """(compiled pattern, runs on collapsed text, gaps split per code point)."""
    custom = expr in _CUSTOM
    if custom:
        expr = _CUSTOM[expr]
    uses_classes = bool(_UCAT.search(expr))
    if uses_classes:
        out, inside, i = [], False, 0
        while i < len(expr):
            c = expr[i]
            if c == "[" and (i == 0 or expr[i - 1] != "\\"):
                inside = True
                out.append(c)
            elif c == "]" and inside and expr[i - 1] != "\\":
                inside = False
                out.append(c)
            elif (m := _UCAT.match(expr, i)) and m.group(1) in _CLASS:
                members = _CLASS[m.group(1)]
                out.append(members if inside else f"[{members}]")
                i = m.end()
                continue
            else:
                out.append(c)
            i += 1
        expr = "".join(out)
        if custom:  # the hand-written matchers never put unassigned code points in [^\s\p{L}\p{N}]
            expr = expr.replace(r"[^\s", r"[^\s" + _UNASSIGNED)
    # ECMAScript '$' is end of input only; '\s' is ASCII whitespace (non-ASCII whitespace was mapped to 0x0B)
    expr = re.sub(r"(?<!\\)\$(?![^\[]*\])", r"\\Z", expr)
    return re.compile(expr, re.ASCII), uses_classes, custom


class PreTokenizer:
    """Splits text into the words llama.cpp's BPE session sees (before byte encoding)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._passes = [_compile(e) for e in REGEXES[kind]]

    def split(self, text: str) -> list[str]:
        if not text:
            return []
        ascii_text = text.isascii()
        collapsed = None
        spans = [(0, len(text))]
        for pattern, uses_classes, custom in self._passes:
            if ascii_text:
                subject = text
            elif uses_classes:
                if collapsed is None:
                    collapsed = text.translate(_COLLAPSE)
                subject = collapsed
            else:
                subject = text.translate(_NONASCII_SPACE)
            out = []
            append = out.append
            for start, end in spans:
                pos = start
                for m in pattern.finditer(subject, start, end):
                    s, e = m.span()
                    if s > pos:
                        if custom:
                            out.extend((k, k + 1) for k in range(pos, s))
                        else:
                            append((pos, s))
                    if e > s:
                        append((s, e))
                    pos = e
                if pos < end:
                    if custom:
                        out.extend((k, k + 1) for k in range(pos, end))
                    else:
                        append((pos, end))
            spans = out
        return [text[s:e] for s, e in spans]


# str.translate table for regexes without classes: llama.cpp maps non-ASCII whitespace to 0x0B
_NONASCII_SPACE = {cp: _SPACE for cp in _WHITESPACE if cp >= 128}
