"""Tool calling through the chat template, with templates in the Qwen 2.5 (Hermes) and Llama 3.1 formats
embedded in tiny GGUFs: tools, earlier calls and tool results rendered by the template, calls parsed out of the
model's text into OpenAI ``tool_calls`` (whole and streamed, through the openai client). A random model writes no
calls, so the end-to-end tests give the server's engine a script: the steps run as usual, the tokens sampled are
the script's."""

from __future__ import annotations

import json
from types import SimpleNamespace

import openai
import pytest

from conftest import wait_idle
from tiny_model import CHATML, write_chat_model
from tool_templates import LLAMA31, LLAMA31_TOKENS, QWEN25, QWEN25_TOKENS
from rocmforge_core.models.synthetic import TinyConfig
from rocmforge_core.serve import ServeOptions, app, schemas, tools
from rocmforge_core.serve.server import ServerThread

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
ASK = [{"role": "user", "content": "weather in Paris?"}]
HISTORY = ASK + [{"role": "assistant", "content": None, "tool_calls": [
    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"}]


class Scripted:
    """The server's engine with every sequence's sampled tokens replaced by ``script`` (then its last token)."""

    def __init__(self, engine, batcher, script: list[int]):
        self._engine, self.batcher, self.script = engine, batcher, script

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def step(self, tokens, slots, positions, out_rows, phase, sampling=None):
        self._engine.step(tokens, slots, positions, out_rows, phase, sampling)
        generated = {s.slot: len(s.ids) for s in self.batcher.running}  # the index of the token sampled now
        return SimpleNamespace(tokens=[self.script[min(generated.get(slots[row], 0), len(self.script) - 1)]
                                       for row in out_rows])


def family_server(tmp_path_factory, name, template, added):
    path = tmp_path_factory.mktemp("tools") / f"{name}.gguf"
    write_chat_model(path, TinyConfig(n_layers=1, d_model=32, n_heads=2, n_kv_heads=1, head_dim=16, d_ff=48,
                                      context_length=2048, tied_output=False), template=template, added=added)
    return ServerThread(ServeOptions(model=path, backend="reference", parallel=4, warm_up=False)).start()


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    srv = family_server(tmp_path_factory, "qwen-style", QWEN25, QWEN25_TOKENS)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    srv = family_server(tmp_path_factory, "llama-style", LLAMA31, LLAMA31_TOKENS)
    yield srv
    srv.stop()


def answering(srv, text: str, end: str):
    """Make the server's model answer ``text`` then the end-of-turn token ``end``."""
    tok, batcher = srv.state.tokenizer, srv.state.batcher
    script = tok.encode(text, add_special=False, special=True) + [tok.token_id(end)]
    engine = batcher.engine._engine if isinstance(batcher.engine, Scripted) else batcher.engine
    batcher.engine = Scripted(engine, batcher, script)


def decoded(srv, text: str) -> str:
    """``text`` as the model's tokens for it decode (the tiny SentencePiece vocabulary adds spaces)."""
    tok = srv.state.tokenizer
    return tok.decode(tok.encode(text, add_special=False, special=True))


def client(srv):
    return openai.OpenAI(base_url=f"{srv.url}/v1", api_key="unused", max_retries=0, timeout=60)


def prompt_text(srv, body) -> str:
    return app.chat_prompt(srv.state.tokenizer, schemas.chat_request(body))


def streamed(stream):
    """(content, tool calls, finish reason) per choice index, accumulated from a stream as clients do."""
    out = {}
    for chunk in stream:
        for c in chunk.choices:
            content, calls, finish = out.get(c.index, ("", {}, None))
            content += c.delta.content or ""
            for call in c.delta.tool_calls or ():
                was = calls.get(call.index, {"id": None, "name": "", "arguments": ""})
                calls[call.index] = {"id": call.id or was["id"], "name": was["name"] + (call.function.name or ""),
                                     "arguments": was["arguments"] + (call.function.arguments or "")}
            out[c.index] = (content, calls, c.finish_reason or finish)
    return out


# -- rendering ----------------------------------------------------------------------------------------------------
def test_qwen_template_gets_tools_calls_and_results(qwen):
    text = prompt_text(qwen, {"messages": HISTORY, "tools": [WEATHER, TIME]})
    assert "<tools>\n" + json.dumps(WEATHER, ensure_ascii=False) in text and '"get_time"' in text
    # the earlier call's arguments as an object, the result as a tool response, then the assistant's turn
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>' in text
    assert text.endswith("<|im_start|>user\n<tool_response>\nsunny, 21 C\n</tool_response><|im_end|>\n"
                         "<|im_start|>assistant\n")
    plain = prompt_text(qwen, {"messages": ASK, "tools": [WEATHER], "tool_choice": "none"})
    assert "<tools>" not in plain


def test_llama_template_gets_tools_calls_and_results(llama):
    text = prompt_text(llama, {"messages": HISTORY, "tools": [WEATHER]})
    assert "Environment: ipython" in text and json.dumps(WEATHER, indent=4) in text
    assert '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>' in text
    assert "<|start_header_id|>ipython<|end_header_id|>\n\nsunny, 21 C<|eot_id|>" in text


def test_template_without_tools_gets_them_in_a_system_message(server):
    """The tiny ChatML template ignores ``tools``: they are described in the Hermes format instead."""
    text = prompt_text(server, {"messages": [{"role": "system", "content": "be brief"}, *ASK], "tools": [WEATHER]})
    assert text.startswith("<|im_start|>system\nbe brief\n\nYou may call one or more functions")
    assert json.dumps(WEATHER) in text and "<tool_call></tool_call> XML tags" in text
    assert tools.output_format(server.state.tokenizer.chat_template) == tools.HERMES


def test_formats_are_told_by_the_template():
    assert tools.output_format(QWEN25) == tools.HERMES and tools.output_format(LLAMA31) == tools.LLAMA3
    assert tools.support(QWEN25) == tools.support(LLAMA31) == tools.Support(True, True, True)
    assert tools.support(CHATML) == tools.Support(tools=False, calls=False, results=True)  # any role renders
    strict = "{% for m in messages %}{% if m.role not in ('user', 'assistant') %}{{ raise_exception('no') }}" \
             "{% endif %}{{ m.content }}{% endfor %}"
    assert tools.support(strict) == tools.Support(False, False, False)


def test_call_arguments_sent_as_an_object_render_the_same(qwen):
    as_object = [HISTORY[0], {**HISTORY[1], "tool_calls": [{"id": "call_1", "type": "function", "function": {
        "name": "get_weather", "arguments": {"city": "Paris"}}}]}, HISTORY[2]]
    assert prompt_text(qwen, {"messages": as_object}) == prompt_text(qwen, {"messages": HISTORY})


def test_what_a_template_cannot_render_is_rewritten(server):
    """ChatML renders neither tools nor calls: both become Hermes text; a strict template also gets the tool
    results as one user message."""
    text = prompt_text(server, {"messages": HISTORY + [{"role": "tool", "content": "humid"}], "tools": [WEATHER]})
    assert '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n' \
           '</tool_call><|im_end|>' in text
    assert "<|im_start|>tool\nsunny, 21 C<|im_end|>" in text
    strict = "{% for m in messages %}{% if m.role not in ('system', 'user', 'assistant') %}{{ raise_exception('no') }}" \
             "{% endif %}[{{ m.role }}]{{ m.content }}{% endfor %}"
    messages, extra = tools.prepare(strict, schemas.chat_request({"messages": HISTORY + [
        {"role": "tool", "content": "humid"}]}).messages, None)
    assert extra == {} and [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[2]["content"] == "<tool_response>\nsunny, 21 C\n</tool_response>\n<tool_response>\nhumid\n" \
                                     "</tool_response>"


# -- parsing ------------------------------------------------------------------------------------------------------
def feed_all(parser, text, size=1):
    out = "".join(parser.feed(text[i:i + size]) for i in range(0, len(text), size))
    tail, calls = parser.finish()
    return out + tail, [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls]


@pytest.mark.parametrize("size", [1, 3, 1000])
def test_hermes_calls_are_held_back_and_parsed(size):
    text = ('Let me see. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
            '<tool_call>{"name": "get_time", "arguments": "{}"}</tool_call>')
    parser = tools.CallParser(tools.HERMES, {"get_weather", "get_time"})
    assert feed_all(parser, text, size) == ("Let me see. ", [("get_weather", {"city": "Paris"}), ("get_time", {})])


@pytest.mark.parametrize("text", [
    "a < b and <tool", "<tool_call>{not json}</tool_call>", '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>',
    '<tool_call>{"name": "get_time", "arguments": {}}</tool_call> and then some text',
    '<tool_call>{"name": "get_time", "arguments": [1]}</tool_call>'])
def test_text_that_is_no_call_of_an_offered_tool_is_content(text):
    assert feed_all(tools.CallParser(tools.HERMES, {"get_time"}), text) == (text, [])


def test_llama3_json_calls_are_parsed():
    parser = tools.CallParser(tools.LLAMA3, {"get_weather", "get_time"})
    text = ' {"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "get_time", "parameters": {}}'
    assert feed_all(parser, text) == ("", [("get_weather", {"city": "Paris"}), ("get_time", {})])
    parser = tools.CallParser(tools.LLAMA3, {"get_weather"})
    assert parser.feed("It is") == "It is" and parser.feed(" {sunny}") == " {sunny}"  # prose streams at once
    assert parser.finish() == ("", [])


# -- end to end ---------------------------------------------------------------------------------------------------
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def test_qwen_style_tool_call_whole_and_streamed(qwen):
    answering(qwen, "Checking. " + CALL, "<|im_end|>")
    with client(qwen) as c:
        r = c.chat.completions.create(model="m", messages=ASK, tools=[WEATHER], max_tokens=200)
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content.strip() == "Checking."
        (call,) = choice.message.tool_calls
        assert call.type == "function" and call.id.startswith("call_") and call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Paris"}
        out = streamed(c.chat.completions.create(model="m", messages=ASK, tools=[WEATHER], max_tokens=200,
                                                 stream=True))
        content, calls, finish = out[0]
        assert (content.strip(), finish) == ("Checking.", "tool_calls")
        assert calls[0]["name"] == "get_weather" and json.loads(calls[0]["arguments"]) == {"city": "Paris"}
        # the client sends the call and its result back: the conversation goes on
        follow = c.chat.completions.create(model="m", max_tokens=200, tools=[WEATHER], messages=ASK + [
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"}])
        assert follow.choices[0].finish_reason == "tool_calls"


def test_qwen_style_n_choices_parallel_calls_and_tool_choice_none(qwen):
    answering(qwen, CALL + CALL, "<|im_end|>")
    with client(qwen) as c:
        r = c.chat.completions.create(model="m", messages=ASK, tools=[WEATHER], max_tokens=200, n=2)
        assert [len(ch.message.tool_calls) for ch in r.choices] == [2, 2]
        assert [ch.message.content for ch in r.choices] == [None, None]
        one = c.chat.completions.create(model="m", messages=ASK, tools=[WEATHER], max_tokens=200,
                                        parallel_tool_calls=False)
        assert len(one.choices[0].message.tool_calls) == 1
        out = streamed(c.chat.completions.create(model="m", messages=ASK, tools=[WEATHER], max_tokens=200, n=3,
                                                 stream=True))
        assert sorted(out) == [0, 1, 2] and all(len(calls) == 2 and finish == "tool_calls"
                                                for _, calls, finish in out.values())
        plain = c.chat.completions.create(model="m", messages=ASK, tools=[WEATHER], tool_choice="none",
                                          max_tokens=200)
        assert plain.choices[0].message.content == decoded(qwen, CALL + CALL) and plain.choices[0].finish_reason == "stop"
        assert plain.choices[0].message.tool_calls is None
    m = wait_idle(qwen.url)
    assert (m["rocmforge_sequences_running"], m["rocmforge_kv_blocks_used"]) == (0, 0)


def test_llama_style_json_tool_call(llama):
    answering(llama, '{"name": "get_weather", "parameters": {"city": "Paris"}}', "<|eom_id|>")
    with client(llama) as c:
        r = c.chat.completions.create(model="m", messages=ASK, tools=[WEATHER], max_tokens=200)
        assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
        assert json.loads(r.choices[0].message.tool_calls[0].function.arguments) == {"city": "Paris"}
        out = streamed(c.chat.completions.create(model="m", messages=ASK, tools=[WEATHER], max_tokens=200,
                                                 stream=True))
        assert out[0][0] == "" and out[0][2] == "tool_calls" and out[0][1][0]["name"] == "get_weather"
    answering(llama, "It is sunny.", "<|eot_id|>")
    with client(llama) as c:
        r = c.chat.completions.create(model="m", messages=HISTORY, tools=[WEATHER], max_tokens=200)
        assert (r.choices[0].message.content.strip(), r.choices[0].finish_reason) == ("It is sunny.", "stop")


@pytest.mark.parametrize("body,message", [
    ({"tools": [{"type": "function"}]}, "tools[0].function"),
    ({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}, "tools[0].type"),
    ({"tools": [{"type": "function", "function": {"name": ""}}]}, "'tools[0].function.name' must not be empty"),
    ({"tools": [WEATHER], "tool_choice": "required"}, "needs constrained decoding"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
     "needs constrained decoding"),
    ({"tools": [WEATHER], "tool_choice": 3}, "'tool_choice' must be 'none' or 'auto'"),
    ({"messages": ASK + [{"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}]},
     "'messages[1].tool_calls[0].function.name' is required"),
    ({"messages": ASK + [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": 3}}]}]},
     "messages[1].tool_calls[0].function.arguments must be JSON text or an object, got an integer"),
])
def test_bad_tool_requests_get_400(qwen, body, message):
    import httpx
    r = httpx.post(f"{qwen.url}/v1/chat/completions", json={"messages": ASK, **body}, timeout=30)
    assert r.status_code == 400 and message in r.json()["error"]["message"], r.text


def test_gemma_template_takes_a_tool_conversation(gemma_path):
    """Gemma 3's template renders no tools and refuses roles other than user and assistant: the tools go into its
    first user turn (where it puts a system message), the call into the model turn, the result into a user turn."""
    from rocmforge_core.tokenizer import Tokenizer

    tok = Tokenizer.from_gguf(gemma_path)
    assert tools.support(tok.chat_template) == tools.Support(False, False, False)
    text = app.chat_prompt(tok, schemas.chat_request({"messages": HISTORY, "tools": [WEATHER]}))
    assert text.startswith("<bos><start_of_turn>user\nYou may call one or more functions")
    assert text.endswith('<start_of_turn>model\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}'
                         "\n</tool_call><end_of_turn>\n<start_of_turn>user\n<tool_response>\nsunny, 21 C\n"
                         "</tool_response><end_of_turn>\n<start_of_turn>model\n")
