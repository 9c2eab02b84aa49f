"""Chat templates: ``tokenizer.chat_template`` rendered with Jinja in a sandbox, with the helpers Hugging Face's
apply_chat_template provides (raise_exception, strftime_now, a tojson that does not HTML-escape) so templates
written for transformers render the same here."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from importlib import resources
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rocmforge_core.tokenizer.errors import TokenizerError


class TemplateError(TokenizerError):
    """A chat template failed to compile or render, or raised an error on purpose (raise_exception)."""


def _raise_exception(message: str):
    raise TemplateError(f"chat template error: {message}")


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=16)
def _compile(template: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(template)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"the chat template does not compile: {exc}") from None


def render_chat(template: str, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True,
                bos_token: str = "", eos_token: str = "", **kwargs: Any) -> str:
    """Render ``template`` for ``messages`` (a list of {"role", "content"} mappings)."""
    if isinstance(messages, (str, bytes)) or not all(isinstance(m, Mapping) for m in messages):
        raise TemplateError("messages must be a list of mappings like {'role': 'user', 'content': 'Hi'}")
    try:
        return _compile(template).render(messages=list(messages), add_generation_prompt=add_generation_prompt,
                                         bos_token=bos_token, eos_token=eos_token, **kwargs)
    except TemplateError:
        raise
    except jinja2.TemplateError as exc:
        raise TemplateError(f"the chat template failed to render: {exc}") from None


BUILTIN_TEMPLATES = ("chatml", "gemma")  # shipped as <name>.jinja beside this module


def builtin_template(name: str) -> str:
    """A built-in template by name (as llama.cpp's --chat-template NAME)."""
    if name not in BUILTIN_TEMPLATES:
        raise TemplateError(f"no built-in chat template {name!r}; built-in: {', '.join(BUILTIN_TEMPLATES)}")
    return resources.files("rocmforge_core.tokenizer").joinpath(f"{name}.jinja").read_text(encoding="utf-8")


def default_template(architecture: str) -> str:
    """The built-in template for a file without tokenizer.chat_template: Gemma's for gemma*, else ChatML."""
    return builtin_template("gemma" if architecture.startswith("gemma") else "chatml")
