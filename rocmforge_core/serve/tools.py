"""Tool (function) calling through the model's chat template, as llama-server --jinja does: the request's
``tools`` go to the template, and the calls the model writes are parsed out of its text into OpenAI
``tool_calls``.

Two output formats, told apart by the template's source:
- Hermes (Qwen 2.5/3, Hermes, and every template that does not mention tools): ``<tool_call>{"name": ...,
  "arguments": {...}}</tool_call>``, any number of them, text before the first one being the message's content;
- Llama 3.1/3.2/3.3 (templates writing ``<|python_tag|>`` or ``"parameters": ``): the whole answer is one JSON
  object ``{"name": ..., "parameters": {...}}`` (several joined by ``;``).
What a template renders is found by rendering it once with probe values (as llama.cpp probes templates): one
that ignores ``tools`` gets them described in a system message, in the Hermes format; one that ignores an
assistant's ``tool_calls`` gets them as Hermes text in the message's content; one that does not render ``tool``
messages (or refuses them, as Gemma's does) gets each run of them as a user message of <tool_response> blocks.

Output that does not parse as calls is the answer's content, unchanged.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from functools import lru_cache

from rocmforge_core.tokenizer.chat import TemplateError, render_chat

HERMES, LLAMA3 = "hermes", "llama3"
OPEN, CLOSE = "<tool_call>", "</tool_call>"

SYSTEM = ("You may call one or more functions to assist with the user query.\n\nYou are provided with function "
          "signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\nFor each function call, "
          "return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n"
          "<tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n</tool_call>")


def output_format(template: str) -> str:
    """The format the template's model writes tool calls in."""
    if OPEN in template:
        return HERMES
    if "<|python_tag|>" in template or '"parameters": ' in template:
        return LLAMA3
    return HERMES


@dataclass(frozen=True)
class Support:
    """What a chat template renders of tool use."""
    tools: bool    # the ``tools`` variable
    calls: bool    # an assistant message's ``tool_calls``
    results: bool  # ``tool`` messages


PROBE_TOOL = {"type": "function", "function": {"name": "rf_probe_tool", "parameters": {"type": "object"}}}
PROBE_CALL = {"role": "assistant", "content": "", "tool_calls": [
    {"id": "call_0", "type": "function", "function": {"name": "rf_probe_call", "arguments": {"x": 1}}}]}


@lru_cache(maxsize=16)
def support(template: str) -> Support:
    def renders(marker, messages, **kwargs):
        try:
            return marker in render_chat(template, messages, **kwargs)
        except TemplateError:
            return False
    user = {"role": "user", "content": "rf_probe_user"}
    return Support(renders("rf_probe_tool", [user], tools=[PROBE_TOOL]), renders("rf_probe_call", [user, PROBE_CALL]),
                   renders("rf_probe_result", [user, PROBE_CALL, {"role": "tool", "tool_call_id": "call_0",
                                                                   "content": "rf_probe_result"}]))


def prepare(template: str, messages: list[dict], tools: list[dict] | None) -> tuple[list[dict], dict]:
    """The messages and template variables for a chat with ``tools``: what the template does not render of tool
    use is rewritten into text it does render (Hermes format)."""
    can = support(template)
    out: list[dict] = []
    for m in messages:
        if m.get("tool_calls") and not can.calls:
            text = "\n".join(hermes_call(c["function"]) for c in m["tool_calls"])
            m = {"role": m["role"], "content": f"{m['content']}\n{text}" if m["content"] else text}
        elif m["role"] == "tool" and not can.results:
            block = f"<tool_response>\n{m['content']}\n</tool_response>"
            if out and out[-1].get("from_tools"):
                out[-1]["content"] += "\n" + block
                continue
            m = {"role": "user", "content": block, "from_tools": True}
        out.append(m)
    out = [{k: v for k, v in m.items() if k != "from_tools"} for m in out]
    if not tools:
        return out, {}
    if can.tools:
        return out, {"tools": tools}
    return with_tools_described(out, tools), {}


def with_tools_described(messages: list[dict], tools: list[dict]) -> list[dict]:
    """``messages`` with the tools described in the (first) system message, for templates that ignore ``tools``."""
    text = SYSTEM.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools))
    if messages and messages[0]["role"] == "system":
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{text}"}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def hermes_call(function: dict) -> str:
    call = {"name": function["name"], "arguments": function["arguments"]}
    return f"{OPEN}\n{json.dumps(call, ensure_ascii=False)}\n{CLOSE}"


class CallParser:
    """One choice's text, fed as it streams: ``feed`` returns the content that can go out now (never text that
    may be the start of a call), ``finish`` the remaining content and the calls found."""

    def __init__(self, fmt: str, names: set[str]):
        self.fmt, self.names = fmt, names
        self.sent = ""       # content released so far
        self.held = ""       # text that may be (the start of) a call
        self.in_call = False  # a call has begun: the rest is held until the end

    def feed(self, text: str) -> str:
        if self.in_call:
            self.held += text
            return ""
        text = self.held + text
        self.held = ""
        if self.fmt == LLAMA3:
            if not (self.sent + text).strip():
                self.held = text  # leading whitespace: the answer may still be a JSON call
                return ""
            if not self.sent and text.lstrip().startswith("{"):
                self.in_call, self.held = True, text
                return ""
        else:
            at = text.find(OPEN)
            if at >= 0:
                self.in_call, self.held = True, text[at:]
                text = text[:at]
            else:
                keep = _partial_suffix(text, OPEN)
                text, self.held = text[:len(text) - keep], text[len(text) - keep:]
        self.sent += text
        return text

    def finish(self) -> tuple[str, list[dict]]:
        """The content not yet released, and the calls (OpenAI's tool_calls); no calls if the held text does
        not parse as calls of the offered tools, in which case it is content."""
        held, self.held = self.held, ""
        calls = (self._hermes(held) if self.fmt == HERMES else self._llama3(held)) if self.in_call else None
        if not calls:
            return held, []
        return "", [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                     "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}}
                    for name, args in calls]

    def _hermes(self, text: str):
        calls, rest = [], text
        while rest.strip():
            rest = rest.lstrip()
            if not rest.startswith(OPEN):
                return None
            end = rest.find(CLOSE)
            body, rest = (rest[len(OPEN):], "") if end < 0 else (rest[len(OPEN):end], rest[end + len(CLOSE):])
            call = self._call(body, "arguments")
            if call is None:
                return None
            calls.append(call)
        return calls

    def _llama3(self, text: str):
        calls = [self._call(part, "parameters") for part in _json_objects(text)]
        return None if not calls or None in calls else calls

    def _call(self, text: str, key: str):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            return None
        if not isinstance(obj, dict) or obj.get("name") not in self.names:
            return None
        args = obj.get(key, obj.get("arguments" if key == "parameters" else "parameters", {}))
        if isinstance(args, str):  # some models write the arguments as JSON text
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                return None
        return (obj["name"], args) if isinstance(args, dict) else None


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that begins ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


def _json_objects(text: str) -> list[str]:
    """The ``;``- or newline-separated JSON objects of a Llama 3 answer (text that is not such a list: one part)."""
    decoder, parts, i = json.JSONDecoder(), [], 0
    text = text.strip()
    while i < len(text):
        try:
            _, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            return [text]
        parts.append(text[i:end])
        i = end
        while i < len(text) and text[i] in " \t\r\n;":
            i += 1
    return parts
