"""The OpenAI response shapes of one generation request (chat.completion[.chunk], text_completion): its ``n``
choices, each an engine sequence after the same prompt, with the tool calls parsed out of a chat choice's text
when tools were offered (tools.py) and, when asked for, each token's log-probabilities (OpenAI's logprobs
shapes); usage counts the prompt once and the tokens of every choice."""

from __future__ import annotations

import time
import uuid

from rocmforge_core.ops import logprobs as logprobs_op
from rocmforge_core.serve import schemas, sse, tools
from rocmforge_core.serve.batcher import FINISH, Sequence


class Choice:
    """One choice: its sequence, the text received so far and, with tools, the parser holding back call text."""

    def __init__(self, index: int, seq: Sequence, parser: tools.CallParser | None, parallel_calls: bool = True):
        self.index, self.seq, self.parser, self.parallel_calls = index, seq, parser, parallel_calls
        self.content = ""                # text released as content
        self.tool_calls: list[dict] = []
        self.finish_reason: str | None = None  # OpenAI's, once the sequence is done
        self.scored: list[tuple] = []    # a whole answer's (token, logprobs op row) pairs, when asked for
        self.text_offset = 0             # completions' logprobs: where the next token's text starts

    def text(self, piece: str) -> str:
        """Content to release for a piece of generated text."""
        out = self.parser.feed(piece) if self.parser else piece
        self.content += out
        return out

    def done(self, reason: str) -> str:
        """The sequence ended (engine reason): the content left to release; tool calls and finish set."""
        tail = ""
        if self.parser:
            tail, self.tool_calls = self.parser.finish()
            if not self.parallel_calls:  # parallel_tool_calls false: the first call only
                self.tool_calls = self.tool_calls[:1]
            self.content += tail
        self.finish_reason = "tool_calls" if self.tool_calls else FINISH[reason]
        return tail


class Reply:
    def __init__(self, req: schemas.Request, model_id: str, seqs: list[Sequence], tool_format: str | None = None,
                 tokenizer=None):
        self.req, self.tokenizer = req, tokenizer  # the tokenizer spells the tokens of logprobs
        names = {t["function"]["name"] for t in req.tools or ()}
        self.choices = [Choice(i, s, tools.CallParser(tool_format, names) if req.tools else None,
                               req.parallel_tool_calls) for i, s in enumerate(seqs)]
        self.id = f"{'chatcmpl' if req.kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
        self.model = req.model or model_id
        self.created = int(time.time())
        self._around: dict[int, tuple[bytes, bytes]] = {}  # text_event's chunk JSON before and after the text

    @property
    def chat(self) -> bool:
        return self.req.kind == "chat"

    @property
    def done(self) -> bool:
        return all(c.finish_reason for c in self.choices)

    def envelope(self, chunk: bool = False) -> dict:
        obj = ("chat.completion.chunk" if chunk else "chat.completion") if self.chat else "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "system_fingerprint": "rocmforge"}

    def log_detail(self) -> str:
        """The access log's note on this request, once it is over: its id, tokens (prompt, of which from the
        prefix cache, and completion), time to first token, and how each choice ended."""
        p, c = self._tokens()
        seqs = [ch.seq for ch in self.choices]
        ends = "/".join(s.finish_reason or ("cancelled" if s.cancelled else "unfinished") for s in seqs)
        first = [s.first_token_at for s in seqs if s.first_token_at is not None]
        ttft = f"{min(first) - seqs[0].submitted:.3f} s" if first else "-"
        return f"{self.id} prompt {p} ({seqs[0].cached_tokens} cached), completion {c} tokens, ttft {ttft}, {ends}"

    def _tokens(self) -> tuple[int, int]:
        return len(self.choices[0].seq.prompt_ids), sum(len(c.seq.ids) for c in self.choices)

    def usage(self) -> dict:
        p, c = self._tokens()
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
                "prompt_tokens_details": {"cached_tokens": self.choices[0].seq.cached_tokens}}

    # -- streamed -----------------------------------------------------------------------------------------------
    def chunk(self, index: int, delta: dict, finish_reason: str | None = None, scored: list | None = None) -> dict:
        logprobs = self.logprobs(self.choices[index], scored)
        if self.chat:
            choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        else:
            choice = {"index": index, "text": delta.get("text", ""), "logprobs": logprobs,
                      "finish_reason": finish_reason}
        return {**self.envelope(chunk=True), "choices": [choice]}

    def first_chunks(self) -> list[dict]:
        delta = {"role": "assistant", "content": ""} if self.chat else {"text": ""}
        return [self.chunk(c.index, delta) for c in self.choices]

    def text_chunk(self, index: int, text: str, scored: list | None = None) -> dict:
        return self.chunk(index, {"content": text} if self.chat else {"text": text}, scored=scored)

    def text_event(self, index: int, text: str) -> bytes:
        """``sse.event(self.text_chunk(index, text))``, the streamed chunk of most tokens, written around its text:
        the rest of that chunk's JSON is the same for every text of a choice, so it is encoded once."""
        around = self._around.get(index)
        if around is None:
            mark = "\x00text\x00"  # the text is the last string of the chunk: nothing after it can hold the mark
            head, _, tail = sse.event(self.text_chunk(index, mark)).rpartition(sse.string(mark).encode())
            around = self._around[index] = (head, tail)
        return around[0] + sse.string(text).encode() + around[1]

    def end_chunks(self, choice: Choice, tail: str) -> list[dict]:
        """A finished choice's last chunks: the content held back, its tool calls, its finish reason."""
        out = [self.text_chunk(choice.index, tail)] if tail else []
        if choice.tool_calls:
            calls = [{"index": j, **call} for j, call in enumerate(choice.tool_calls)]
            out.append(self.chunk(choice.index, {"tool_calls": calls}))
        return out + [self.chunk(choice.index, {} if self.chat else {"text": ""}, choice.finish_reason)]

    # -- whole --------------------------------------------------------------------------------------------------
    def whole(self) -> dict:
        choices = []
        for c in self.choices:
            if self.chat:
                message = {"role": "assistant", "content": c.content if c.content or not c.tool_calls else None}
                if c.tool_calls:
                    message["tool_calls"] = c.tool_calls
                choices.append({"index": c.index, "message": message, "logprobs": self.logprobs(c, c.scored),
                                "finish_reason": c.finish_reason})
            else:
                choices.append({"index": c.index, "text": c.content, "logprobs": self.logprobs(c, c.scored),
                                "finish_reason": c.finish_reason})
        return {**self.envelope(), "choices": choices, "usage": self.usage()}

    # -- logprobs -----------------------------------------------------------------------------------------------
    def logprobs(self, choice: Choice, scored: list | None) -> dict | None:
        """OpenAI's logprobs object of a choice's ``scored`` tokens ((token, logprobs op row) pairs): chat's
        ``content`` list or completions' parallel arrays; None when the request did not ask (or, streamed, for a
        chunk without tokens)."""
        top = self.req.rules.logprobs
        if top is None or scored is None:
            return None
        entries = []
        for token, row in scored:
            chosen, ids, values = logprobs_op.split(row)
            entries.append((token, chosen, list(zip(ids, values))[:top]))
        if self.chat:
            return {"content": [{**self._token(t, lp), "top_logprobs": [self._token(i, v) for i, v in alts]}
                                for t, lp, alts in entries], "refusal": None}
        texts = [self._piece(t) for t, _, _ in entries]
        offsets = []
        for text in texts:
            offsets.append(choice.text_offset)
            choice.text_offset += len(text)
        return {"tokens": texts, "token_logprobs": [lp for _, lp, _ in entries],
                "top_logprobs": [{self._piece(i): v for i, v in alts} for _, _, alts in entries],
                "text_offset": offsets}

    def _piece(self, token: int) -> str:
        return self.tokenizer.token_to_piece(token).decode("utf-8", "replace")

    def _token(self, token: int, logprob: float) -> dict:
        data = self.tokenizer.token_to_piece(token)
        return {"token": data.decode("utf-8", "replace"), "logprob": logprob, "bytes": list(data)}
