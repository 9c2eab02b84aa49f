"""Validation of OpenAI-style request bodies into ``Request`` values, each problem a 400 naming the field.

Fields rocmforge does not know are ignored (as llama.cpp's server does); fields it knows are type- and
range-checked; features it does not offer (n > 1, tools, echo, suffix) are refused rather than silently
dropped. Structured output, logit bias and log-probabilities are parsed by structured.py. Sampling fields left out take llama.cpp's defaults (``SamplingParams``), not OpenAI's.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from rocmforge_core.engine import SamplingParams
from rocmforge_core.engine.sampling import RANGES, SamplingError
from rocmforge_core.serve import structured
from rocmforge_core.serve.errors import APIError

MAX_STOPS = 16


@dataclass
class Request:
    """One generation request: a chat (``messages``) or a completion (``prompt``, text or token ids)."""
    kind: str                      # "chat" or "completion"
    model: str | None
    messages: list[dict] | None = None
    prompt: str | list[int] | None = None
    max_tokens: int | None = None  # None: up to the context limit
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False
    ignore_eos: bool = False
    rules: structured.Rules = field(default_factory=structured.Rules)  # grammar, logit_bias, logprobs


def parse_json(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise APIError(f"the request body is not valid JSON ({exc})") from None
    except RecursionError:
        raise APIError("the request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise APIError(f"the request body must be a JSON object, got {_kind(body)}")
    return body


def _kind(v: Any) -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else "infinity"  # JSON's NaN and 1e400 (Python reads them)
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "an integer", float: "a number"}.get(type(v), type(v).__name__)


def _integer(body: dict, name: str, lo: int, hi: int | None = None):
    """body[name] checked to be an integer within [lo, hi] (hi None: no upper bound); None if absent."""
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise APIError(f"'{name}' must be an integer, got {_kind(v)}", param=name)
    if hi is None and v < lo:
        raise APIError(f"'{name}' must be >= {lo}, got {v}", param=name)
    if hi is not None and not lo <= v <= hi:
        raise APIError(f"'{name}' must be in [{lo}, {hi}], got {v}", param=name)
    return v


def flag(body: dict, name: str, default: bool = False) -> bool:
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise APIError(f"'{name}' must be a boolean, got {_kind(v)}", param=name)
    return v


def _sampling(body: dict) -> SamplingParams:
    """The request's sampling fields, range-checked by SamplingParams (the check ``rocmforge run`` makes)."""
    values = {name: body[name] for name in RANGES if body.get(name) is not None}
    seed = values.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool) and -(2 ** 63) <= seed < 0:
        values["seed"] = seed + 2 ** 64  # OpenAI seeds are signed 64-bit integers
    try:
        return SamplingParams(**values)
    except SamplingError as exc:
        raise APIError(str(exc), param=exc.field) from None


def _stops(body: dict) -> list[str]:
    v = body.get("stop")
    if v is None:
        return []
    stops = [v] if isinstance(v, str) else v
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise APIError("'stop' must be a string or an array of strings", param="stop")
    if len(stops) > MAX_STOPS:
        raise APIError(f"'stop' may hold at most {MAX_STOPS} strings, got {len(stops)}", param="stop")
    return [s for s in stops if s]


def _unsupported(body: dict) -> None:
    n = _integer(body, "n", 1, 2 ** 31 - 1)
    if n is not None and n != 1:
        raise APIError(f"'n' must be 1: this server returns one choice per request, got {n}", param="n")
    best_of = _integer(body, "best_of", 1, 2 ** 31 - 1)
    if best_of is not None and best_of != 1:
        raise APIError(f"'best_of' must be 1, got {best_of}", param="best_of")
    for name in ("echo", "suffix", "tools", "functions"):
        v = body.get(name)
        if v not in (None, False, {}, [], ""):
            raise APIError(f"'{name}' is not supported by this server; leave it out", param=name)


def _common(body: dict, kind: str) -> Request:
    _unsupported(body)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise APIError(f"'model' must be a string, got {_kind(model)}", param="model")
    name = "max_completion_tokens" if kind == "chat" and body.get("max_completion_tokens") is not None \
        else "max_tokens"  # chat's newer name wins
    max_tokens = _integer(body, name, 0)
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise APIError(f"'stream_options' must be an object, got {_kind(options)}", param="stream_options")
    return Request(kind, model, max_tokens=max_tokens, sampling=_sampling(body), stop=_stops(body),
                   stream=flag(body, "stream"), include_usage=flag(options or {}, "include_usage"),
                   ignore_eos=flag(body, "ignore_eos"), rules=structured.parse(body, kind))


def _content(message: dict, i: int) -> str:
    """A message's text: a string, or an array of {"type": "text", "text": ...} parts joined."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise APIError(f"messages[{i}].content: only text parts ({{'type': 'text', 'text': ...}}) are "
                               "supported", param="messages")
            texts.append(part["text"])
        return "".join(texts)
    raise APIError(f"messages[{i}].content must be a string or an array of text parts, got {_kind(content)}",
                   param="messages")


def chat_request(body: dict) -> Request:
    req = _common(body, "chat")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError("'messages' must be a non-empty array of {'role': ..., 'content': ...} objects",
                       param="messages")
    req.messages = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise APIError(f"messages[{i}] must be an object with a string 'role'", param="messages")
        req.messages.append({"role": m["role"], "content": _content(m, i)})
    return req


def completion_request(body: dict, vocab_size: int) -> Request:
    req = _common(body, "completion")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one prompt
    if isinstance(prompt, str):
        req.prompt = prompt
    elif isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        bad = next((t for t in prompt if not 0 <= t < vocab_size), None)
        if bad is not None:
            raise APIError(f"'prompt' holds token id {bad}, outside the vocabulary [0, {vocab_size})",
                           param="prompt")
        req.prompt = list(prompt)
    elif isinstance(prompt, list) and len(prompt) > 1:
        raise APIError("'prompt' must be one string or one array of token ids: batches of prompts are not "
                       "supported, send one request each", param="prompt")
    else:
        raise APIError("'prompt' must be a string or a non-empty array of token ids", param="prompt")
    return req
