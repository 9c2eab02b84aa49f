"""llama.cpp's tokenizer suite and its tokenization of 50 strings with the two real models' vocabularies."""

from __future__ import annotations

import json

import pytest

from rocmforge_core.tokenizer.tokenizer import _clean_spaces
from tests.tokenizer.suite import VOCABS, vocab_cases


@pytest.mark.parametrize("name", VOCABS)
def test_vocab_suite_matches_llama_cpp(testdata, vocab_tok, name):
    tok = vocab_tok(name)
    cases = vocab_cases(testdata, name)
    assert len(cases) >= 40
    wrong = [(text, want, got) for text, want in cases if (got := tok.encode(text, add_special=False)) != want]
    assert not wrong, f"{len(wrong)}/{len(cases)} differ; first: {wrong[0]!r}"


@pytest.mark.parametrize("name", VOCABS)
def test_vocab_suite_decodes_back(testdata, vocab_tok, name):
    """Decoding gives the input back; SPM drops the prefix space it added, BPE vocabs with llama.cpp's
    clean_spaces give the input with that clean-up applied (and their raw pieces give the input exactly)."""
    tok = vocab_tok(name)
    for text, ids in vocab_cases(testdata, name):
        raw = b"".join(tok.token_to_piece(i) for i in ids)
        prefix = b" " if tok.vocab.add_space_prefix and text else b""
        assert raw == prefix + text.encode(), text
        want = _clean_spaces(text.encode()).decode() if tok.vocab.clean_spaces else text
        assert tok.decode(ids) == want, text


def _reference(testdata, model: str) -> dict:
    return json.loads((testdata / "reference" / f"tokenizer_ref_{model}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("model, fixture", [("gemma-3-270m-q4_k_m", "gemma_tok"),
                                            ("SmolLM2-135M-Instruct.Q4_1", "smollm2_tok")])
def test_real_models_match_llama_cpp(testdata, request, model, fixture):
    ref = _reference(testdata, model)
    tok = request.getfixturevalue(fixture)
    assert len(ref["cases"]) == 50
    for case in ref["cases"]:
        ids = tok.encode(case["text"], add_special=ref["add_special"], special=ref["parse_special"])
        assert ids == case["ids"], case["text"]
        assert (tok.decode(ids) == case["text"]) == case["detok_roundtrip_equal"], case["text"]


def test_spm_space_prefix_rule(vocab_tok, gemma_tok):
    spm = vocab_tok("llama-spm")
    assert spm.vocab.add_space_prefix and not gemma_tok.vocab.add_space_prefix
    # llama-spm escapes " Hello" as "▁▁Hello"; gemma (add_space_prefix = false) keeps the text as is
    assert [spm.token_text(i) for i in spm.encode("Hello", add_special=False)] == ["▁Hello"]
    assert [gemma_tok.token_text(i) for i in gemma_tok.encode("Hello", add_special=False)] == ["Hello"]
    assert spm.decode(spm.encode(" Hello", add_special=False)) == " Hello"


def test_smollm2_matches_hf_tokenizers_on_english(smollm2_tok):
    """A whole document through an independent BPE (Hugging Face tokenizers, Rust) built from the same metadata."""
    hf_tokenizers = pytest.importorskip("tokenizers", reason="Hugging Face tokenizers is the independent check")
    from pydoc_data.topics import topics

    from rocmforge_core.tokenizer.pretokenize import GPT2, REGEXES

    v = smollm2_tok.vocab
    hf = hf_tokenizers.Tokenizer(hf_tokenizers.models.BPE(vocab=v.token_to_id,
                                                          merges=sorted(v.merges, key=v.merges.get)))
    splits = [hf_tokenizers.pre_tokenizers.Split(hf_tokenizers.Regex(e + (r"|\s+" if e == GPT2 else "")),
                                                 behavior="isolated") for e in REGEXES[v.pre]]
    hf.pre_tokenizer = hf_tokenizers.pre_tokenizers.Sequence(
        splits + [hf_tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    text = "\n\n".join(topics[k] for k in sorted(topics))[:200_000]
    assert smollm2_tok.encode(text, add_special=False) == hf.encode(text, add_special_tokens=False).ids
