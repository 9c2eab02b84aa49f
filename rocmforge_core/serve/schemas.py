"""Validation of OpenAI-style request bodies with pydantic models, into ``Request`` values; every problem is a 400
naming the field (``APIError`` with ``param``), worded as one sentence.

Fields rocmforge does not know are ignored (as llama.cpp's server does); fields it knows are type- and
range-checked (strictly: ``"5"`` is not an integer, ``1`` is not a boolean); features it does not offer are
refused rather than silently dropped. Sampling fields are checked by ``SamplingParams``' own range check, the one
``rocmforge run`` makes of its options, and left out they take llama.cpp's defaults, not OpenAI's. Structured output,
logit bias and log-probabilities are declared here and parsed by structured.py into ``Request.rules``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, \
    field_validator, model_validator
from pydantic_core import PydanticCustomError

from rocmforge_core.engine import SamplingParams
from rocmforge_core.engine.sampling import RANGES, SamplingError, check_field
from rocmforge_core.serve import structured
from rocmforge_core.serve.errors import APIError

MAX_STOPS = 16
MAX_N = 128  # choices per request at most, as OpenAI
# Fields of features not offered: refused unless left out or given their "off" value.
REFUSED = {"echo": "", "suffix": "", "functions": " (send 'tools' instead)",
           "function_call": " (send 'tool_choice' instead)"}


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
    n: int = 1                     # choices, each its own sequence after the same prompt
    tools: list[dict] | None = None  # function tools offered to the chat template (None: none, or tool_choice none)
    parallel_tool_calls: bool = True
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


def _refuse(message: str) -> PydanticCustomError:
    """A validation error whose message is ours, word for word."""
    return PydanticCustomError("rocmforge", "{message}", {"message": message})


# -- fields -------------------------------------------------------------------------------------------------------
def _sampled(name: str):
    """A sampling field, range-checked by SamplingParams' check (the words ``rocmforge run`` uses)."""
    def check(v):
        if v is not None:
            if name == "seed" and isinstance(v, int) and not isinstance(v, bool) and -(2 ** 63) <= v < 0:
                v += 2 ** 64  # OpenAI seeds are signed 64-bit integers
            try:
                check_field(name, v)
            except SamplingError as exc:
                raise _refuse(str(exc)) from None
        return v
    return Annotated[Any, BeforeValidator(check)]


def _stops(v):
    if v is None:
        return []
    stops = [v] if isinstance(v, str) else v
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _refuse("'stop' must be a string or an array of strings")
    if len(stops) > MAX_STOPS:
        raise _refuse(f"'stop' may hold at most {MAX_STOPS} strings, got {len(stops)}")
    return [s for s in stops if s]


Stops = Annotated[list[str], BeforeValidator(_stops)]
Count = Annotated[int, Field(ge=0)]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    include_usage: bool | None = None


class Body(BaseModel):
    """What chat and completion requests share."""
    model_config = ConfigDict(extra="ignore", strict=True)
    model: str | None = None
    max_tokens: Count | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    ignore_eos: bool | None = None
    n: Annotated[int, Field(ge=1, le=MAX_N)] | None = None
    stop: Stops | None = None
    temperature: _sampled("temperature") = None
    top_k: _sampled("top_k") = None
    top_p: _sampled("top_p") = None
    min_p: _sampled("min_p") = None
    typical_p: _sampled("typical_p") = None
    repeat_penalty: _sampled("repeat_penalty") = None
    presence_penalty: _sampled("presence_penalty") = None
    frequency_penalty: _sampled("frequency_penalty") = None
    penalty_last_n: _sampled("penalty_last_n") = None
    seed: _sampled("seed") = None
    # structured output, logit bias and log-probabilities: their shapes vary (an object or JSON text, a bool or a
    # count), so structured.parse checks them, with its own messages, into Request.rules
    response_format: Any = None
    json_schema: Any = None
    grammar: Any = None
    guided_json: Any = None
    guided_regex: Any = None
    guided_choice: Any = None
    guided_grammar: Any = None
    logit_bias: Any = None
    logprobs: Any = None
    top_logprobs: Any = None

    @model_validator(mode="before")
    @classmethod
    def _not_offered(cls, body):
        for name, hint in REFUSED.items():
            if body.get(name) not in (None, False, {}, [], ""):
                raise _refuse(f"'{name}' is not supported by this server; leave it out{hint}")
        return body

    def sampling(self) -> SamplingParams:
        return SamplingParams(**{name: getattr(self, name) for name in RANGES if getattr(self, name) is not None})

    def request(self, kind: str) -> Request:
        options = self.stream_options
        return Request(kind, self.model, max_tokens=self.max_tokens, sampling=self.sampling(), stop=self.stop or [],
                       stream=bool(self.stream), include_usage=bool(options and options.include_usage),
                       ignore_eos=bool(self.ignore_eos), n=self.n or 1,
                       rules=structured.parse({name: getattr(self, name) for name in structured.FIELDS}, kind))


# -- chat ---------------------------------------------------------------------------------------------------------
def _call_arguments(v):
    """JSON text, as OpenAI sends it, or the object itself (as some clients do)."""
    if isinstance(v, (str, dict)):
        return v
    raise _refuse(f"must be JSON text or an object, got {_kind(v)}")


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    name: str
    arguments: Annotated[Any, BeforeValidator(_call_arguments)] = "{}"


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    role: str
    content: Any = None
    tool_calls: list[ToolCall] | None = None  # an assistant's earlier calls
    tool_call_id: str | None = None           # a tool message: the call it answers
    name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _an_object_with_a_role(cls, m):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise _refuse("must be an object with a string 'role'")
        return m

    @field_validator("content", mode="before")
    @classmethod
    def _text(cls, content):
        """A string, or an array of {"type": "text", "text": ...} parts joined; null is empty."""
        if content is None or isinstance(content, str):
            return content or ""
        if isinstance(content, list):
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                raise _refuse("only text parts ({'type': 'text', 'text': ...}) are supported")
            return "".join(p["text"] for p in content)
        raise _refuse(f"must be a string or an array of text parts, got {_kind(content)}")

    def for_template(self) -> dict:
        """The message as chat templates read it (Hugging Face's shape: tool call arguments as objects)."""
        out = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.function.name, "arguments": _arguments(c.function.arguments)}}
                                 for c in self.tool_calls]
        for key in ("tool_call_id", "name"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def _arguments(text: str | dict):
    """A call's arguments as the object templates print with tojson (text that is not a JSON object stays text)."""
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return value if isinstance(value, dict) else text


class Function(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    name: Annotated[str, Field(min_length=1)]
    description: str | None = None
    parameters: dict | None = None


class Tool(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["function"]
    function: Function


class ChatBody(Body):
    messages: list[Message] = Field(None, validate_default=True)  # left out: the sentence of _non_empty
    max_completion_tokens: Count | None = None
    tools: list[Tool] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None

    @field_validator("messages", mode="before")
    @classmethod
    def _non_empty(cls, v):
        if not isinstance(v, list) or not v:
            raise _refuse("'messages' must be a non-empty array of {'role': ..., 'content': ...} objects")
        return v

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _choice(cls, v):
        if v is None or v in ("none", "auto"):
            return v
        if v == "required" or isinstance(v, dict):
            raise _refuse("only 'auto' and 'none' are supported: forcing a tool call needs constrained decoding "
                          "of the template's call format, which this server does not do yet")
        raise _refuse(f"must be 'none' or 'auto', got {_kind(v)}")

    def request(self, kind: str) -> Request:
        req = super().request(kind)
        if self.max_completion_tokens is not None:  # chat's newer name wins
            req.max_tokens = self.max_completion_tokens
        req.messages = [m.for_template() for m in self.messages]
        if self.tools and self.tool_choice != "none":
            req.tools = [t.model_dump(exclude_none=True) for t in self.tools]
        req.parallel_tool_calls = self.parallel_tool_calls is not False
        return req


# -- completions --------------------------------------------------------------------------------------------------
def _prompt(prompt, info: ValidationInfo):
    """One string or one array of token ids within the vocabulary (a batch of one prompt is that prompt)."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return _token_ids(prompt, info, "prompt")
    if isinstance(prompt, list) and len(prompt) > 1:
        raise _refuse("'prompt' must be one string or one array of token ids: batches of prompts are not "
                      "supported, send one request each")
    raise _refuse("'prompt' must be a string or a non-empty array of token ids")


def _token_ids(ids: list[int], info: ValidationInfo, name: str) -> list[int]:
    n_vocab = info.context["n_vocab"]
    bad = next((t for t in ids if not 0 <= t < n_vocab), None)
    if bad is not None:
        raise _refuse(f"'{name}' holds token id {bad}, outside the vocabulary [0, {n_vocab})")
    return list(ids)


class CompletionBody(Body):
    prompt: Annotated[Any, BeforeValidator(_prompt)] = Field(None, validate_default=True)
    best_of: int | None = None

    @field_validator("best_of")
    @classmethod
    def _one(cls, v):
        if v is not None and v != 1:
            raise _refuse(f"'best_of' must be 1, got {v}")
        return v

    def request(self, kind: str) -> Request:
        req = super().request(kind)
        req.prompt = self.prompt
        return req


# -- embeddings and the tokenizer -----------------------------------------------------------------------------------
def _inputs(v, info: ValidationInfo):
    """A string, an array of strings, an array of token ids, or an array of arrays of token ids."""
    def is_ids(x):
        return isinstance(x, list) and x and all(isinstance(t, int) and not isinstance(t, bool) for t in x)
    if isinstance(v, str) or is_ids(v):
        v = [v]
    if isinstance(v, list) and v and all(isinstance(x, str) or is_ids(x) for x in v):
        return [x if isinstance(x, str) else _token_ids(x, info, "input") for x in v]
    raise _refuse("'input' must be a string, an array of strings, an array of token ids or an array of arrays of "
                  "token ids, none of them empty")


class EmbeddingBody(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    input: Annotated[list, BeforeValidator(_inputs)]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


class TokenizeBody(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    content: str
    add_special: bool = False


class DetokenizeBody(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    tokens: Annotated[list[int], BeforeValidator(lambda v, info: _ids(v, info))]


def _ids(v, info: ValidationInfo):
    if not isinstance(v, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in v):
        raise _refuse("'tokens' must be an array of token ids")
    n_vocab = info.context["n_vocab"]
    bad = next((t for t in v if not 0 <= t < n_vocab), None)
    if bad is not None:
        raise _refuse(f"token id {bad} is outside the vocabulary [0, {n_vocab})")
    return v


# -- entry points -------------------------------------------------------------------------------------------------
def validate(model: type[BaseModel], body: dict, **context) -> BaseModel:
    """``body`` validated as ``model``; the first problem as an APIError naming its field."""
    try:
        return model.model_validate(body, context=context)
    except ValidationError as exc:
        raise _api_error(exc.errors(include_url=False)[0]) from None


def chat_request(body: dict) -> Request:
    return validate(ChatBody, body).request("chat")


def completion_request(body: dict, vocab_size: int) -> Request:
    return validate(CompletionBody, body, n_vocab=vocab_size).request("completion")


def _api_error(error: dict) -> APIError:
    loc = [p for p in error["loc"] if not (isinstance(p, str) and p.startswith(("function-", "constrained-")))]
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or None
    param = str(loc[0]) if loc else None
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "rocmforge":
        message = ctx["message"]  # ours: it names a top-level field itself; a nested one's gets the place
        if path and path != param:
            message = f"{path}{' ' if message.startswith('must') else ': '}{message}"
        elif path and not message.startswith(("'", *RANGES)):
            message = f"'{path}' {message}"
        return APIError(message, param=param)
    what = {"int_type": "an integer", "int_from_float": "an integer", "bool_type": "a boolean",
            "string_type": "a string", "model_type": "an object", "dict_type": "an object", "list_type": "an array",
            "model_attributes_type": "an object"}.get(kind)
    if what:
        message = f"'{path}' must be {what}, got {_kind(value)}"
    elif kind == "greater_than_equal":
        message = f"'{path}' must be >= {ctx['ge']}, got {value}"
    elif kind == "less_than_equal":
        message = f"'{path}' must be <= {ctx['le']}, got {value}"
    elif kind == "literal_error":
        message = f"'{path}' must be {ctx['expected']}, got {value!r}"
    elif kind == "missing":
        message = f"'{path}' is required"
    elif kind == "string_too_short":
        message = f"'{path}' must not be empty"
    else:
        message = f"'{path}': {error['msg']}"
    return APIError(message, param=param)
