"""The ASGI app (starlette): OpenAI-compatible endpoints, tokenize/detokenize, health and metrics.

Handlers are module-level functions; the ``ServerState`` they serve is ``request.app.state.server``, and the
``endpoint`` decorator gives each API handler its key check, readiness check, request counting and the answer to
a client that left (499, counted as cancelled, never logged as an error). Every handler answers errors as
OpenAI-shaped JSON (errors.py). Generation requests become ``Sequence`` values handed to the batcher; the
batcher's thread sends their events back into this event loop. A client that disconnects, while sending its
body, mid-stream or while waiting for a whole answer, cancels its request at once. Around the routes: an access
log line per request (access_log.py) and the Host check (security.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import time
import uuid

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request as HTTPRequest
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from rocmforge_core.engine.grammar import GrammarError
from rocmforge_core.errors import RocmforgeError
from rocmforge_core.ops import logprobs as logprobs_op
from rocmforge_core.serve import schemas, sse
from rocmforge_core.serve.access_log import AccessLog
from rocmforge_core.serve.batcher import FINISH, Sequence
from rocmforge_core.serve.connections import AcceptErrors
from rocmforge_core.serve.errors import APIError
from rocmforge_core.serve.security import HostCheck
from rocmforge_core.serve.state import ServerState

log = logging.getLogger("rocmforge.serve")


def create_app(state: ServerState) -> Starlette:
    """The app serving ``state``, which the handlers find as ``request.app.state.server``."""
    routes = [Route("/health", health), Route("/metrics", metrics), Route("/v1/models", models),
              Route("/v1/chat/completions", chat_completions, methods=["POST"]),
              Route("/v1/completions", completions, methods=["POST"]),
              Route("/tokenize", tokenize, methods=["POST"]), Route("/detokenize", detokenize, methods=["POST"])]
    middleware = [Middleware(AccessLog), Middleware(HostCheck, state=state)]  # the access log sees refusals too
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware,
                    exception_handlers={HTTPException: http_error, Exception: server_error})
    app.state.server = state
    return app


def server_state(request: HTTPRequest) -> ServerState:
    return request.app.state.server


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):
    state = app.state.server
    asyncio.get_running_loop().set_exception_handler(AcceptErrors())
    if not state.loaded.is_set() and state.batcher is None:
        state.start_loading()
    try:
        yield
    finally:
        await run_in_threadpool(state.close)


class ClientGone(Exception):
    """The client closed its connection before its answer was complete."""


def endpoint(name: str, *, auth: bool = True, ready: bool = True):
    """Wrap a handler ``(request, state) -> Response``: API key check, readiness, APIError -> JSON, a client that
    left -> 499, a bug -> 500 (logged once), request counting under ``name``."""
    def wrap(handler):
        @functools.wraps(handler)
        async def run(request: HTTPRequest) -> Response:
            state = server_state(request)
            try:
                if auth:
                    check_key(state, request)
                if ready and not state.ready:
                    raise APIError(state.error and f"the model failed to load: {state.error}"
                                   or "the model is still loading; retry when /health says ok", status=503)
                response = await handler(request, state)
            except APIError as exc:
                response = error_response(exc)
            except ClientGone:
                response = Response(status_code=499)  # nobody reads it
            except Exception as exc:  # answered here, so that starlette does not log it a second time
                response = internal_error(request, exc)
            state.metrics.request(name, response.status_code)
            return response
        return run
    return wrap


def check_key(state: ServerState, request: HTTPRequest) -> None:
    key = state.options.api_key
    if not key:
        return
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header[:7].lower() == "bearer " else request.headers.get("x-api-key", "")
    if not hmac.compare_digest(given.encode(), key.encode()):
        raise APIError("invalid or missing API key: send 'Authorization: Bearer <key>'", status=401,
                       code="invalid_api_key")


async def read_json(state: ServerState, request: HTTPRequest) -> dict:
    """The JSON object of the body: sent as application/json (a browser sends other types without asking first),
    at most ``max_body_bytes``, whole within ``read_timeout`` seconds."""
    ctype = request.headers.get("content-type", "")
    if ctype.split(";")[0].strip().lower() != "application/json":
        raise APIError(f"the request body must be JSON sent with 'Content-Type: application/json', got "
                       f"{repr(ctype) if ctype else 'no content type'}", status=415)
    o = state.options
    limit = o.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise APIError(f"the request body is larger than {limit} bytes", status=413)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(o.read_timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise APIError(f"the request body is larger than {limit} bytes", status=413)
                chunks.append(chunk)
    except TimeoutError:
        raise APIError(f"the request body did not arrive within {o.read_timeout:g} s", status=408) from None
    except ClientDisconnect:
        state.metrics.add("cancelled")
        raise ClientGone from None
    return schemas.parse_json(b"".join(chunks))


# -- status -------------------------------------------------------------------------------------------------------
async def health(request: HTTPRequest) -> Response:
    state = server_state(request)
    if state.ready:
        status, body = 200, {"status": "ok"}
    elif state.error:
        status, body = 503, {"status": "error", "error": {"message": state.error}}
    else:
        status, body = 503, {"status": "loading"}
    state.metrics.request("health", status)
    return JSONResponse(body, status_code=status)


async def metrics(request: HTTPRequest) -> Response:
    state = server_state(request)
    state.metrics.request("metrics", 200)  # before rendering: the answer counts itself
    return PlainTextResponse(state.metrics.render(state), media_type="text/plain; version=0.0.4")


@endpoint("models", ready=False)
async def models(request: HTTPRequest, state: ServerState) -> Response:
    data = {"id": state.model_id, "object": "model", "created": state.created, "owned_by": "rocmforge"}
    if state.ready:
        data["meta"] = {"architecture": state.model.config.arch, "n_ctx": state.engine.n_ctx,
                        "n_vocab": state.tokenizer.n_vocab, "backend": state.model.planner.preferred,
                        "parallel": state.options.parallel}
    return JSONResponse({"object": "list", "data": [data]})


# -- tokenizer ----------------------------------------------------------------------------------------------------
@endpoint("tokenize")
async def tokenize(request: HTTPRequest, state: ServerState) -> Response:
    body = await read_json(state, request)
    content = body.get("content")
    if not isinstance(content, str):
        raise APIError("'content' must be a string", param="content")
    add_special = schemas.flag(body, "add_special")
    ids = await run_in_threadpool(state.tokenizer.encode, content, add_special=add_special, special=True)
    return JSONResponse({"tokens": ids})


@endpoint("detokenize")
async def detokenize(request: HTTPRequest, state: ServerState) -> Response:
    body = await read_json(state, request)
    ids = body.get("tokens")
    n_vocab = state.tokenizer.n_vocab
    if not isinstance(ids, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
        raise APIError("'tokens' must be an array of token ids", param="tokens")
    bad = next((t for t in ids if not 0 <= t < n_vocab), None)
    if bad is not None:
        raise APIError(f"token id {bad} is outside the vocabulary [0, {n_vocab})", param="tokens")
    text = await run_in_threadpool(state.tokenizer.decode, ids)
    return JSONResponse({"content": text})


# -- generation ---------------------------------------------------------------------------------------------------
@endpoint("chat_completions")
async def chat_completions(request: HTTPRequest, state: ServerState) -> Response:
    return await generate(request, state, schemas.chat_request(await read_json(state, request)))


@endpoint("completions")
async def completions(request: HTTPRequest, state: ServerState) -> Response:
    body = await read_json(state, request)
    return await generate(request, state, schemas.completion_request(body, state.tokenizer.n_vocab))


def prompt_ids(state: ServerState, req: schemas.Request) -> list[int]:
    """Token ids of a request's prompt (runs in a worker thread: templates and long prompts take time)."""
    tok = state.tokenizer
    try:
        if req.kind == "chat":
            ids = tok.encode(tok.apply_chat_template(req.messages), add_special=False, special=True)
        elif isinstance(req.prompt, str):
            ids = tok.encode(req.prompt, add_special=True)
        else:
            ids = req.prompt
    except RocmforgeError as exc:  # a chat template that refuses these messages, say
        raise APIError(str(exc), param="messages" if req.kind == "chat" else "prompt") from None
    n_ctx = state.batcher.max_sequence_tokens
    if not ids:
        raise APIError("the prompt is empty: at least one token is needed",
                       param="messages" if req.kind == "chat" else "prompt")
    if len(ids) >= n_ctx:
        raise APIError(f"the prompt has {len(ids)} tokens but the context holds {n_ctx}; shorten it",
                       param="messages" if req.kind == "chat" else "prompt", code="context_length_exceeded")
    return ids


def constraint(state: ServerState, req: schemas.Request):
    """The request's grammar compiled for this model (a worker thread: a large schema takes a while), or None."""
    if req.rules.grammar is None:
        return None
    kind, spec = req.rules.grammar
    try:
        return state.grammars.constraint(kind, spec)
    except GrammarError as exc:
        raise APIError(str(exc), param="response_format" if kind == "json_schema" else "grammar") from None


async def generate(request: HTTPRequest, state: ServerState, req: schemas.Request) -> Response:
    req.rules.check_vocabulary(state.model.config.vocab_size)
    ids = await run_in_threadpool(prompt_ids, state, req)
    grammar = await run_in_threadpool(constraint, state, req)
    room = state.batcher.max_sequence_tokens - len(ids)
    max_tokens = room if req.max_tokens is None else min(req.max_tokens, room)
    queue: asyncio.Queue = asyncio.Queue()
    loop = asyncio.get_running_loop()
    seq = Sequence(ids, max_tokens, req.sampling, lambda ev: loop.call_soon_threadsafe(queue.put_nowait, ev),
                   stop=req.stop, eog_ids=frozenset() if req.ignore_eos else state.tokenizer.eog_ids,
                   decoder=state.tokenizer.stream(), logit_bias=req.rules.logit_bias, constraint=grammar,
                   logprobs=req.rules.logprobs is not None)
    state.batcher.submit(seq)
    reply = Reply(req, state.model_id, seq, state.tokenizer)
    request.state.log_detail = reply.log_detail
    if req.stream:
        return SequenceStream(stream(reply, queue), lambda: state.batcher.cancel(seq))
    return await whole(request, state, reply, queue)


async def stream(reply: "Reply", queue: asyncio.Queue):
    """SSE chunks of one sequence; SequenceStream frees the sequence however the response ends."""
    yield sse.event(reply.chunk(reply.first_delta(), None))
    while True:
        events = [await queue.get()]
        while not queue.empty():  # text that piled up while the client was slow goes out as one chunk
            events.append(queue.get_nowait())
        text = "".join(value for kind, value in events if kind == "text")
        scored = [value for kind, value in events if kind == "logprobs"]
        if text or scored:
            yield sse.event(reply.chunk(reply.delta(text), None, scored))
        end = next(((kind, value) for kind, value in events if kind not in ("text", "logprobs")), None)
        if end is None:
            continue
        kind, value = end
        if kind == "done":
            yield sse.event(reply.chunk({} if reply.req.kind == "chat" else reply.delta(""), FINISH[value]))
            if reply.req.include_usage:
                yield sse.event({**reply.envelope(chunk=True), "choices": [], "usage": reply.usage()})
        else:  # the engine failed, or the server is shutting down: the error, then the end all the same
            yield sse.event(value.body())
        yield sse.DONE
        return


async def whole(request: HTTPRequest, state: ServerState, reply: "Reply", queue: asyncio.Queue) -> Response:
    """The whole answer, once the sequence ends; a client that disconnects meanwhile cancels it."""
    pieces: list[str] = []
    scored: list[tuple] = []

    async def collect():
        while True:
            kind, value = await queue.get()
            if kind == "text":
                pieces.append(value)
            elif kind == "logprobs":
                scored.append(value)
            else:
                return kind, value

    async def disconnected():
        while (await request.receive())["type"] != "http.disconnect":
            pass

    collector, watcher = asyncio.ensure_future(collect()), asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({collector, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not collector.done():
            collector.cancel()
            state.batcher.cancel(reply.seq)  # counted as cancelled where the batcher frees it
        for task in (watcher, collector):  # a cancelled task is done only once it has run its cancellation
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if collector.cancelled():
        raise ClientGone
    kind, value = collector.result()
    if kind == "error":
        raise value
    return JSONResponse(reply.whole("".join(pieces), FINISH[value], scored))


# -- errors of routing and bugs -----------------------------------------------------------------------------------
async def http_error(request: HTTPRequest, exc: HTTPException) -> Response:
    message = {404: f"no route {request.url.path}", 405: f"method {request.method} is not allowed on "
               f"{request.url.path}"}.get(exc.status_code, str(exc.detail))
    server_state(request).metrics.request("other", exc.status_code)
    return error_response(APIError(message, status=exc.status_code))


async def server_error(request: HTTPRequest, exc: Exception) -> Response:
    server_state(request).metrics.request("other", 500)
    return internal_error(request, exc)


def internal_error(request: HTTPRequest, exc: Exception) -> Response:
    log.error("rocmforge: internal error on %s", request.url.path, exc_info=exc)
    return error_response(APIError(f"internal server error: {type(exc).__name__}", status=500))


class SequenceStream(StreamingResponse):
    """An SSE response that frees its sequence however it ends, even when the client leaves before the first
    event (the body generator, never started, would run no ``finally``)."""

    def __init__(self, content, on_close):
        super().__init__(content, media_type="text/event-stream", headers=sse.HEADERS)
        self.on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


def error_response(exc: APIError) -> Response:
    headers = {"Retry-After": "1"} if exc.status == 503 else None
    if exc.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


class Reply:
    """The OpenAI response shapes of one request (chat.completion[.chunk] or text_completion)."""

    def __init__(self, req: schemas.Request, model_id: str, seq: Sequence, tokenizer=None):
        self.req, self.seq, self.tokenizer = req, seq, tokenizer
        self.text_offset = 0  # completions' logprobs: where the next token's text starts
        prefix = "chatcmpl" if req.kind == "chat" else "cmpl"
        self.id = f"{prefix}-{uuid.uuid4().hex}"
        self.model = req.model or model_id
        self.created = int(time.time())

    def envelope(self, chunk: bool = False) -> dict:
        obj = ("chat.completion.chunk" if chunk else "chat.completion") if self.req.kind == "chat" \
            else "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "system_fingerprint": "rocmforge"}

    def log_detail(self) -> str:
        """The access log's note on this request, once it is over."""
        p, c = len(self.seq.prompt_ids), len(self.seq.ids)
        end = self.seq.finish_reason or ("cancelled" if self.seq.cancelled else "unfinished")
        return f"prompt {p}, completion {c} tokens, {end}"

    def usage(self) -> dict:
        p, c = len(self.seq.prompt_ids), len(self.seq.ids)
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    def first_delta(self) -> dict:
        return {"role": "assistant", "content": ""} if self.req.kind == "chat" else {"text": ""}

    def delta(self, text: str) -> dict:
        return {"content": text} if self.req.kind == "chat" else {"text": text}

    def chunk(self, delta: dict, finish_reason: str | None, scored: list | None = None) -> dict:
        logprobs = self.logprobs(scored)
        if self.req.kind == "chat":
            choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": delta.get("text", ""), "logprobs": logprobs, "finish_reason": finish_reason}
        return {**self.envelope(chunk=True), "choices": [choice]}

    def whole(self, text: str, finish_reason: str, scored: list | None = None) -> dict:
        logprobs = self.logprobs(scored or [])
        if self.req.kind == "chat":
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": logprobs,
                      "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}
        return {**self.envelope(), "choices": [choice], "usage": self.usage()}

    def logprobs(self, scored: list | None) -> dict | None:
        """OpenAI's logprobs object of ``scored`` tokens ((token, logprobs op row) pairs): chat's ``content`` list
        or completions' parallel arrays; None when the request did not ask."""
        top = self.req.rules.logprobs
        if top is None or scored is None:
            return None
        entries = []
        for token, row in scored:
            chosen, ids, values = logprobs_op.split(row)
            entries.append((token, chosen, list(zip(ids, values))[:top]))
        if self.req.kind == "chat":
            return {"content": [{**self._token(t, lp), "top_logprobs": [self._token(i, v) for i, v in alts]}
                                for t, lp, alts in entries], "refusal": None}
        texts = [self._piece(t) for t, _, _ in entries]
        offsets = []
        for text in texts:
            offsets.append(self.text_offset)
            self.text_offset += len(text)
        return {"tokens": texts, "token_logprobs": [lp for _, lp, _ in entries],
                "top_logprobs": [{self._piece(i): v for i, v in alts} for _, _, alts in entries],
                "text_offset": offsets}

    def _piece(self, token: int) -> str:
        return self.tokenizer.token_to_piece(token).decode("utf-8", "replace")

    def _token(self, token: int, logprob: float) -> dict:
        data = self.tokenizer.token_to_piece(token)
        return {"token": data.decode("utf-8", "replace"), "logprob": logprob, "bytes": list(data)}
