"""Chat templates rendered as Hugging Face's apply_chat_template does."""

from __future__ import annotations

import pytest

from rocmforge_core.tokenizer import TemplateError, render_chat

MESSAGES = [{"role": "user", "content": "Hi there"}]


def test_smollm2_chatml(smollm2_tok):
    text = smollm2_tok.apply_chat_template(MESSAGES)
    assert text == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                    "<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n")
    ids = smollm2_tok.encode(text, add_special=False, special=True)
    assert ids.count(smollm2_tok.token_id("<|im_start|>")) == 3
    no_prompt = smollm2_tok.apply_chat_template(MESSAGES, add_generation_prompt=False)
    assert not no_prompt.endswith("assistant\n")


def test_gemma_builtin_template(gemma_tok):
    assert gemma_tok.vocab.chat_template is None  # the file has none: the gemma template is built in
    msgs = [{"role": "system", "content": "Be brief."}, *MESSAGES, {"role": "assistant", "content": " Hello! "},
            {"role": "user", "content": "Bye"}]
    assert gemma_tok.apply_chat_template(msgs) == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi there<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n")
    ids = gemma_tok.encode(gemma_tok.apply_chat_template(MESSAGES), add_special=False, special=True)
    assert ids[:2] == [gemma_tok.bos_id, gemma_tok.token_id("<start_of_turn>")]
    with pytest.raises(TemplateError, match="must alternate"):
        gemma_tok.apply_chat_template(MESSAGES + MESSAGES)


def test_hf_helpers():
    template = ("{{ messages | tojson }}|{{ {'b': 1, 'a': '<é>'} | tojson(sort_keys=True) }}|{{ bos_token }}"
                "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.role }}{% endfor %}"
                "|{{ strftime_now('%Y') | length }}")
    out = render_chat(template, [{"role": "user", "content": "<b>"}] * 2, bos_token="<s>")
    assert out == '[{"role": "user", "content": "<b>"}, {"role": "user", "content": "<b>"}]|' \
                  '{"a": "<é>", "b": 1}|<s>user|4'


def test_template_errors_are_clear():
    with pytest.raises(TemplateError, match="does not compile"):
        render_chat("{% for %}", MESSAGES)
    with pytest.raises(TemplateError, match="boom"):
        render_chat("{{ raise_exception('boom') }}", MESSAGES)
    with pytest.raises(TemplateError, match="list of mappings"):
        render_chat("x", "hello")
    with pytest.raises(TemplateError, match="failed to render"):  # the sandbox refuses attribute tricks
        render_chat("{{ messages.__class__.__mro__ }}", MESSAGES)
