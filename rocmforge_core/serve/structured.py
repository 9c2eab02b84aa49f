"""The request fields of structured output, logit bias and log-probabilities, parsed into ``Rules``.

Structured output (one of, else 400):
- ``response_format``: OpenAI's ``{"type": "text"}``, ``{"type": "json_object"}`` (any JSON object; llama-server's
  optional ``schema`` key narrows it) or ``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}``;
- ``json_schema`` (llama-server): a JSON schema object;
- ``grammar`` (llama-server): a GBNF or Lark grammar (llguidance tells them apart and converts GBNF to Lark);
- vLLM's ``guided_json`` (a schema, object or string), ``guided_regex``, ``guided_choice`` (strings),
  ``guided_grammar`` (GBNF or Lark).
``logit_bias``: OpenAI's ``{"token id": bias}``, biases in [-100, 100], at most 300 entries.
Log-probabilities: completions' ``logprobs: int`` (0 to 20 alternatives), chat's ``logprobs: true`` with
``top_logprobs: int`` (0 to 20).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from rocmforge_core.ops.logprobs import TOP
from rocmforge_core.serve.errors import APIError

MAX_BIAS = 300  # OpenAI's limit
GUIDED = {"guided_json": "json_schema", "guided_regex": "regex", "guided_choice": "choice",
          "guided_grammar": "gbnf", "grammar": "gbnf", "json_schema": "json_schema"}
ANY_OBJECT = {"type": "object"}
FIELDS = ("response_format", *GUIDED, "logit_bias", "logprobs", "top_logprobs")  # the body fields parse reads


@dataclass
class Rules:
    """What a request asks of the sampler besides its parameters."""
    grammar: tuple[str, Any] | None = None  # (llguidance kind, grammar text or schema)
    logit_bias: list[tuple[int, float]] = field(default_factory=list)
    logprobs: int | None = None  # alternatives per token (0: only the chosen token's); None: not asked

    def check_vocabulary(self, n_vocab: int) -> None:
        bad = next((t for t, _ in self.logit_bias if not 0 <= t < n_vocab), None)
        if bad is not None:
            raise APIError(f"'logit_bias' names token id {bad}, outside the vocabulary [0, {n_vocab})",
                           param="logit_bias")


def parse(body: dict, kind: str) -> Rules:
    """The rules of a chat (``kind`` "chat") or completion request body."""
    return Rules(_grammar(body), _logit_bias(body), _logprobs(body, kind))


def _grammar(body: dict) -> tuple[str, Any] | None:
    found = []
    fmt = body.get("response_format")
    if fmt is not None:
        found.append(("response_format", _response_format(fmt)))
    for name, llg_kind in GUIDED.items():
        v = body.get(name)
        if v is None:
            continue
        if llg_kind == "choice":
            if not isinstance(v, list) or not v or not all(isinstance(c, str) for c in v):
                raise APIError(f"'{name}' must be a non-empty array of strings", param=name)
        elif llg_kind == "json_schema":
            v = _schema(v, name)
        elif not isinstance(v, str) or not v.strip():
            raise APIError(f"'{name}' must be a non-empty string", param=name)
        found.append((name, (llg_kind, v)))
    found = [(name, g) for name, g in found if g is not None]
    if len(found) > 1:
        raise APIError(f"give one of {', '.join(repr(n) for n, _ in found)}: a request follows one grammar",
                       param=found[1][0])
    return found[0][1] if found else None


def _response_format(fmt) -> tuple[str, Any] | None:
    if not isinstance(fmt, dict) or not isinstance(fmt.get("type"), str):
        raise APIError("'response_format' must be an object with a string 'type'", param="response_format")
    kind = fmt["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        schema = fmt.get("schema")
        return ("json_schema", ANY_OBJECT if schema is None else _schema(schema, "response_format.schema"))
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict):
            raise APIError("'response_format.json_schema' must be an object holding the 'schema'",
                           param="response_format")
        schema = spec.get("schema", ANY_OBJECT)
        return ("json_schema", _schema(schema, "response_format.json_schema.schema"))
    raise APIError(f"'response_format.type' must be 'text', 'json_object' or 'json_schema', got {kind!r}",
                   param="response_format")


def _schema(v, name: str):
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except json.JSONDecodeError as exc:
            raise APIError(f"'{name}' is not valid JSON ({exc})", param=name.split(".")[0]) from None
    if not isinstance(v, (dict, bool)):
        raise APIError(f"'{name}' must be a JSON schema object", param=name.split(".")[0])
    return v


def _logit_bias(body: dict) -> list[tuple[int, float]]:
    v = body.get("logit_bias")
    if v is None:
        return []
    if not isinstance(v, dict):
        raise APIError("'logit_bias' must be an object mapping token ids to biases", param="logit_bias")
    if len(v) > MAX_BIAS:
        raise APIError(f"'logit_bias' may hold at most {MAX_BIAS} entries, got {len(v)}", param="logit_bias")
    out = {}
    for key, bias in v.items():
        try:
            token = int(key)
        except ValueError:
            raise APIError(f"'logit_bias' keys must be token ids, got {key!r}", param="logit_bias") from None
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not math.isfinite(bias) \
                or not -100 <= bias <= 100:
            raise APIError(f"'logit_bias' values must be numbers in [-100, 100], got {bias!r} for token {key}",
                           param="logit_bias")
        out[token] = out.get(token, 0.0) + float(bias)  # "7" and "07" name one token
    return sorted(out.items())


def _count(body: dict, name: str) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= TOP:
        raise APIError(f"'{name}' must be an integer in [0, {TOP}], got {v!r}", param=name)
    return v


def _logprobs(body: dict, kind: str) -> int | None:
    if kind != "chat":
        return _count(body, "logprobs")
    asked = body.get("logprobs")
    if asked is not None and not isinstance(asked, bool):
        raise APIError(f"'logprobs' must be a boolean, got {asked!r}", param="logprobs")
    top = _count(body, "top_logprobs")
    if top is not None and not asked:
        raise APIError("'top_logprobs' needs 'logprobs': true", param="top_logprobs")
    return (top or 0) if asked else None
