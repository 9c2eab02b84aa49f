"""A vocabulary read from GGUF ``tokenizer.*`` metadata, with llama.cpp's load-time rules (src/llama-vocab.cpp,
``llama_vocab::impl::load``): per-model defaults, special-token ids, token attributes derived from
``token_type`` plus llama.cpp's text-based fix-ups (EOT/EOG/FIM detection, "unused" control tokens, phi-3 rstrip).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rocmforge_core.tokenizer.errors import TokenizerError

# llama_token_attr bits
UNDEFINED, UNKNOWN, UNUSED, NORMAL, CONTROL, USER_DEFINED, BYTE = 0, 1, 2, 4, 8, 16, 32
LSTRIP, RSTRIP = 1 << 7, 1 << 8
# GGUF token_type value -> attribute
_TYPE_ATTR = {0: UNDEFINED, 1: NORMAL, 2: UNKNOWN, 3: CONTROL, 4: USER_DEFINED, 5: UNUSED, 6: BYTE}

SPM, BPE = "spm", "bpe"

# tokenizer.ggml.pre -> (pre-tokenizer kind, overrides of the BPE defaults); kinds are keys of pretokenize.REGEXES
_PRE = {
    "default": ("default", {}),
    **{name: ("llama3", {"ignore_merges": True, "add_bos": True})
       for name in ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2")},
    "deepseek-llm": ("deepseek-llm", {"clean_spaces": False}),
    "deepseek-coder": ("deepseek-coder", {"clean_spaces": False}),
    "falcon": ("falcon", {}),
    "mpt": ("gpt2", {}),
    "starcoder": ("starcoder", {}),
    **{name: ("gpt2", {}) for name in ("gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es",
                                       "jina-v2-de", "a.x-4.0", "mellum", "modern-bert", "exaone4", "olmo")},
    "refact": ("starcoder", {}),
    "command-r": ("starcoder", {"clean_spaces": False}),
    **{name: ("qwen2", {"clean_spaces": False}) for name in ("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2")},
    "megrez": ("qwen2", {}),
    "stablelm2": ("qwen2", {}),
    "qwen35": ("qwen35", {"clean_spaces": False}),
    "smollm": ("starcoder", {"clean_spaces": False}),
    "codeshell": ("starcoder", {}),
    "exaone": ("starcoder", {}),
    "minerva-7b": ("starcoder", {}),
    "dbrx": ("llama3", {}),
    "smaug-bpe": ("llama3", {}),
    "chatglm-bpe": ("llama3-nbos", {}),
    "glm4": ("llama3-nbos", {}),
    "poro-chat": ("poro", {"clean_spaces": False}),
    "bloom": ("poro", {}),
    "gpt3-finnish": ("poro", {}),
    "gemma4": ("gemma4", {"escape_whitespaces": True}),
}


@dataclass
class Vocab:
    """Token texts, scores and attributes plus the flags llama.cpp derives at load time."""
    model: str                      # tokenizer.ggml.model
    kind: str                       # SPM or BPE
    pre: str                        # pre-tokenizer kind (BPE), "" for SPM
    tokens: list[str]
    scores: list[float]
    attrs: list[int]
    token_to_id: dict[str, int]
    merges: dict[tuple[str, str], int] = field(default_factory=dict)
    bos_id: int | None = None
    eos_id: int | None = None
    eot_id: int | None = None
    eom_id: int | None = None
    unk_id: int | None = None
    sep_id: int | None = None
    pad_id: int | None = None
    eog_ids: frozenset[int] = frozenset()
    add_bos: bool = False
    add_eos: bool = False
    add_space_prefix: bool = False
    escape_whitespaces: bool = True
    byte_encode: bool = True
    ignore_merges: bool = False
    clean_spaces: bool = False
    special_ids: list[int] = field(default_factory=list)   # partition order: longest text first
    chat_template: str | None = None
    architecture: str = ""
    name: str = ""

    def __len__(self) -> int:
        return len(self.tokens)


def _str_list(value) -> list[str]:
    tolist = getattr(value, "tolist", None)
    return tolist() if tolist is not None else list(value)


def load_vocab(md: Mapping[str, Any]) -> Vocab:
    """Build a Vocab from a GGUF metadata mapping; raises TokenizerError on missing or unsupported metadata."""
    model = md.get("tokenizer.ggml.model")
    if model is None:
        raise TokenizerError("the GGUF metadata has no tokenizer (tokenizer.ggml.model is missing)")
    model = str(model)
    pre_name = md.get("tokenizer.ggml.pre")
    flags: dict[str, Any] = {}
    if model == "llama":
        kind, pre = SPM, ""
        defaults = dict(bos_id=1, eos_id=2, unk_id=0)
        flags.update(add_space_prefix=True, clean_spaces=False, add_bos=True, add_eos=False,
                     escape_whitespaces=True)
    elif model in ("gpt2", "gemma4"):
        kind = BPE
        defaults = dict(bos_id=11, eos_id=11) if model == "gpt2" else {}
        flags.update(add_space_prefix=False, escape_whitespaces=False, clean_spaces=True)
        if model == "gemma4":
            pre_name = "gemma4"  # llama.cpp forces it whatever the file says
        if pre_name is None:
            pre_name = "default"  # llama.cpp warns and uses the default pre-tokenizer
        pre_name = str(pre_name)
        if pre_name not in _PRE:
            raise TokenizerError(f"unknown pre-tokenizer tokenizer.ggml.pre = {pre_name!r} "
                                 f"(supported: {', '.join(sorted(_PRE))})")
        pre, overrides = _PRE[pre_name]
        flags.update(overrides)
        if pre == "gemma4":
            flags["byte_encode"] = False
        if pre == "llama3-nbos":
            pre = "llama3"
            defaults.pop("bos_id", None)
    else:
        raise TokenizerError(f"unsupported tokenizer model tokenizer.ggml.model = {model!r} "
                             "(supported: llama, gpt2, gemma4)")

    if "tokenizer.ggml.add_space_prefix" in md:
        flags["add_space_prefix"] = bool(md["tokenizer.ggml.add_space_prefix"])

    if "tokenizer.ggml.tokens" not in md:
        raise TokenizerError("the GGUF metadata has no token list (tokenizer.ggml.tokens)")
    tokens = _str_list(md["tokenizer.ggml.tokens"])
    n = len(tokens)
    if "" in tokens:
        tokens = [t or f"[EMPTY_{i}]" for i, t in enumerate(tokens)]
    token_to_id = dict(zip(tokens, range(n)))
    if len(token_to_id) != n:
        seen: dict[str, int] = {}
        for i, t in enumerate(tokens):
            if t in seen:
                raise TokenizerError(f"duplicate token in vocabulary: {t!r} has ids {seen[t]} and {i}")
            seen[t] = i

    scores_md = md.get("tokenizer.ggml.scores")
    if scores_md is not None:
        scores_arr = np.asarray(scores_md, dtype=np.float32)
        if len(scores_arr) < n:
            raise TokenizerError(f"tokenizer.ggml.scores has {len(scores_arr)} entries for {n} tokens")
        scores = scores_arr[:n].tolist()
    else:
        scores = [0.0] * n

    types_md = md.get("tokenizer.ggml.token_type")
    if types_md is not None:
        types_arr = np.asarray(types_md)
        if len(types_arr) < n:
            raise TokenizerError(f"tokenizer.ggml.token_type has {len(types_arr)} entries for {n} tokens")
        lut = np.zeros(8, dtype=np.int64)
        for t, a in _TYPE_ATTR.items():
            lut[t] = a
        types_arr = types_arr[:n].astype(np.int64)
        attrs_arr = np.where((types_arr >= 0) & (types_arr < 7), lut[np.clip(types_arr, 0, 7)], UNDEFINED)
    else:
        attrs_arr = np.full(n, NORMAL, dtype=np.int64)

    merges: dict[tuple[str, str], int] = {}
    if kind == BPE:
        if "tokenizer.ggml.merges" not in md:
            raise TokenizerError("a BPE tokenizer needs tokenizer.ggml.merges, which the GGUF metadata lacks")
        for rank, m in enumerate(_str_list(md["tokenizer.ggml.merges"])):
            pos = m.find(" ", 1)
            pair = (m[:pos], m[pos + 1:]) if pos >= 0 else ("", "")
            merges.setdefault(pair, rank)

    ids = dict(bos_id=None, eos_id=None, eot_id=None, eom_id=None, unk_id=None, sep_id=None, pad_id=None)
    ids.update(defaults)
    for name in list(ids):
        if ids[name] is not None and ids[name] >= n:
            ids[name] = None
    for name, key in (("bos_id", "bos_token_id"), ("eos_id", "eos_token_id"), ("eot_id", "eot_token_id"),
                      ("eom_id", "eom_token_id"), ("unk_id", "unknown_token_id"), ("sep_id", "seperator_token_id"),
                      ("pad_id", "padding_token_id")):
        value = md.get(f"tokenizer.ggml.{key}")
        if value is not None and 0 <= int(value) < n:
            ids[name] = int(value)
    fim_ids = {}
    for fim, keys in (("fim_pre", ("fim_pre_token_id", "prefix_token_id")),
                      ("fim_suf", ("fim_suf_token_id", "suffix_token_id")),
                      ("fim_mid", ("fim_mid_token_id", "middle_token_id")), ("fim_pad", ("fim_pad_token_id",)),
                      ("fim_rep", ("fim_rep_token_id",)), ("fim_sep", ("fim_sep_token_id",))):
        for key in keys:  # llama.cpp reads the deprecated prefix/suffix/middle keys last, so they win
            value = md.get(f"tokenizer.ggml.{key}")
            if value is not None and 0 <= int(value) < n:
                fim_ids[fim] = int(value)
    for name, key in (("add_bos", "add_bos_token"), ("add_eos", "add_eos_token")):
        if f"tokenizer.ggml.{key}" in md:
            flags[name] = bool(md[f"tokenizer.ggml.{key}"])
    if pre == "gemma4":
        flags["add_bos"] = True  # llama.cpp's Gemma 4 workaround
    if flags.get("add_bos") and ids["bos_id"] is None:
        raise TokenizerError("tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set")
    if flags.get("add_eos") and ids["eos_id"] is None:
        raise TokenizerError("tokenizer.ggml.add_eos_token is true, but tokenizer.ggml.eos_token_id is not set")

    all_ids = {**ids, **fim_ids}
    eog = _fix_special_attrs(tokens, token_to_id, attrs_arr, all_ids)  # sets EOT/EOM ids it detects
    ids = {name: all_ids[name] for name in ids}
    arch = str(md.get("general.architecture", ""))
    name = str(md.get("general.name", ""))
    special_ids = np.flatnonzero(attrs_arr & (CONTROL | USER_DEFINED | UNKNOWN)).tolist()
    special_ids.sort(key=lambda i: -len(tokens[i].encode("utf-8")))
    attrs = attrs_arr.tolist()
    if "phi-3" in name.lower() or "phi3" in name.lower():
        for i in special_ids:
            attrs[i] |= RSTRIP
        if "</s>" in token_to_id:
            attrs[token_to_id["</s>"]] |= RSTRIP
        for t in ("<unk>", "<s>", "<|endoftext|>"):
            if t in token_to_id:
                attrs[token_to_id[t]] &= ~RSTRIP
    template = md.get("tokenizer.chat_template")
    return Vocab(model=model, kind=kind, pre=pre, tokens=tokens, scores=scores, attrs=attrs,
                 token_to_id=token_to_id, merges=merges, eog_ids=frozenset(eog), special_ids=special_ids,
                 chat_template=str(template) if template is not None else None, architecture=arch, name=name,
                 **ids, **flags)


_EOT_TEXTS = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
              "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"}
_EOG_TEXTS = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
              "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
              "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
              "<｜end▁of▁sentence｜>", "[e~["}
# fill-in-the-middle tokens: metadata key -> texts llama.cpp recognises; pad, repo and file-sep also end generation
_FIM = {
    "fim_pre": {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "\u2581<PRE>",
                "<|code_prefix|>", "<|prefix|>"},
    "fim_suf": {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "\u2581<SUF>",
                "<|code_suffix|>", "<|suffix|>"},
    "fim_mid": {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "\u2581<MID>",
                "<|code_middle|>", "<|middle|>"},
    "fim_pad": {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"},
    "fim_rep": {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"},
    "fim_sep": {"<|file_sep|>"},
}
_FIM_EOG = ("fim_pad", "fim_rep", "fim_sep")


def _fix_special_attrs(tokens: list[str], token_to_id: dict[str, int], attrs: np.ndarray, ids: dict) -> set[int]:
    """llama.cpp's text-based special-token detection; returns the end-of-generation ids.

    llama.cpp walks an unordered_map, so when several EOT-looking tokens exist its pick is unspecified;
    this takes the lowest id."""
    def force_control(i: int) -> None:
        attrs[i] |= CONTROL

    if ids["eot_id"] is None:
        found = sorted(token_to_id[t] for t in _EOT_TEXTS if t in token_to_id)
        if found:
            ids["eot_id"] = found[0]
            force_control(found[0])
    if ids["eom_id"] is None and "<|eom_id|>" in token_to_id:
        ids["eom_id"] = token_to_id["<|eom_id|>"]
        force_control(ids["eom_id"])
    eog: set[int] = set()
    for kind, texts in _FIM.items():
        tid = ids.get(kind)
        if tid is None:
            found = sorted(token_to_id[t] for t in texts if t in token_to_id)
            if found:
                tid = found[0]
                force_control(tid)
        if tid is not None and kind in _FIM_EOG:
            eog.add(tid)
    for i in np.flatnonzero((attrs & CONTROL) & ~(attrs & UNUSED)).tolist():
        if "unused" in tokens[i]:
            attrs[i] |= UNUSED
    for t in _EOG_TEXTS:
        if t in token_to_id:
            eog.add(token_to_id[t])
            force_control(token_to_id[t])
    for t in ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"):
        if t in token_to_id:
            attrs[token_to_id[t]] = USER_DEFINED
    for name in ("eos_id", "eot_id", "eom_id"):
        if ids[name] is not None:
            eog.add(ids[name])
    texts = {tokens[i]: i for i in eog}
    if "<|end|>" in texts and (("<|return|>" in texts and ("<|call|>" in texts or "<|calls|>" in texts))
                               or ("<|calls|>" in texts and "<|flush|>" in texts)
                               or ("<|call|>" in texts and "<|flush|>" in texts)):
        eog.discard(texts["<|end|>"])
        attrs[texts["<|end|>"]] = USER_DEFINED
    if "<|tool_response>" in texts and "</s>" in texts:
        eog.discard(texts["</s>"])
        attrs[texts["</s>"]] = NORMAL
    return eog
