"""The ASGI app (starlette): OpenAI-compatible endpoints, tokenize/detokenize, health and metrics.

Handlers are module-level functions; the ``ServerState`` they serve is ``request.app.state.server``, and the
``endpoint`` decorator gives each API handler its key check, readiness check, request counting and the answer to
a client that left (499, counted as cancelled, never logged as an error). Every handler answers errors as
OpenAI-shaped JSON (errors.py). Generation requests become ``Sequence`` values handed to the batcher; the
batcher's thread sends their events back into this event loop (a ``Mailbox``: one wakeup per burst of events, so
one per decode step rather than one per token of every stream). A client that disconnects, while sending its
body, mid-stream or while waiting for a whole answer, cancels its request at once. Around the routes: an access
log line per request (access_log.py) and the Host check (security.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import functools
import hmac
import logging
import threading
import weakref

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request as HTTPRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from rocmforge_core.engine import SamplingParams
from rocmforge_core.engine.engine import pooling_of
from rocmforge_core.engine.grammar import GrammarError
from rocmforge_core.errors import RocmforgeError
from rocmforge_core.serve import schemas, sse, tools
from rocmforge_core.serve.access_log import AccessLog
from rocmforge_core.serve.batcher import Embedding, Sequence
from rocmforge_core.serve.connections import AcceptErrors
from rocmforge_core.serve.errors import APIError
from rocmforge_core.serve.metrics import CONTENT_TYPE
from rocmforge_core.serve.replies import Reply
from rocmforge_core.serve.security import HostCheck
from rocmforge_core.serve.state import ServerState

log = logging.getLogger("rocmforge.serve")


def create_app(state: ServerState) -> Starlette:
    """The app serving ``state``, which the handlers find as ``request.app.state.server``."""
    routes = [Route("/health", health), Route("/metrics", metrics), Route("/v1/models", models),
              Route("/v1/models/{model_id:path}", model),
              Route("/v1/chat/completions", chat_completions, methods=["POST"]),
              Route("/v1/completions", completions, methods=["POST"]),
              Route("/v1/embeddings", embeddings, methods=["POST"]),
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
    return Response(state.metrics.render(state), media_type=CONTENT_TYPE)


def model_card(state: ServerState) -> dict:
    data = {"id": state.model_id, "object": "model", "created": state.created, "owned_by": "rocmforge"}
    if state.ready:
        data["meta"] = {"architecture": state.model.config.arch, "n_ctx": state.engine.n_ctx,
                        "n_vocab": state.tokenizer.n_vocab, "backend": state.model.planner.preferred,
                        "parallel": state.options.parallel}
    return data


@endpoint("models", ready=False)
async def models(request: HTTPRequest, state: ServerState) -> Response:
    return JSONResponse({"object": "list", "data": [model_card(state)]})


@endpoint("models", ready=False)
async def model(request: HTTPRequest, state: ServerState) -> Response:
    """The one model by its id (OpenAI ids may hold slashes); any other id is 404 in OpenAI's shape."""
    model_id = request.path_params["model_id"]
    if model_id != state.model_id:
        raise APIError(f"the model {model_id!r} does not exist; this server serves {state.model_id!r}", status=404,
                       param="model", code="model_not_found")
    return JSONResponse(model_card(state))


# -- tokenizer ----------------------------------------------------------------------------------------------------
@endpoint("tokenize")
async def tokenize(request: HTTPRequest, state: ServerState) -> Response:
    body = schemas.validate(schemas.TokenizeBody, await read_json(state, request))
    ids = await run_in_threadpool(state.tokenizer.encode, body.content, add_special=body.add_special, special=True)
    return JSONResponse({"tokens": ids})


@endpoint("detokenize")
async def detokenize(request: HTTPRequest, state: ServerState) -> Response:
    body = schemas.validate(schemas.DetokenizeBody, await read_json(state, request), n_vocab=state.tokenizer.n_vocab)
    text = await run_in_threadpool(state.tokenizer.decode, body.tokens)
    return JSONResponse({"content": text})


# -- generation ---------------------------------------------------------------------------------------------------
@endpoint("chat_completions")
async def chat_completions(request: HTTPRequest, state: ServerState) -> Response:
    body = server_defaults(state, await read_json(state, request))
    return await generate(request, state, schemas.chat_request(body))


@endpoint("completions")
async def completions(request: HTTPRequest, state: ServerState) -> Response:
    body = server_defaults(state, await read_json(state, request))
    return await generate(request, state, schemas.completion_request(body, state.tokenizer.n_vocab))


def server_defaults(state: ServerState, body: dict) -> dict:
    """The body with the server's --temp where the request gives no temperature (then checked like the rest)."""
    if state.options.temperature is not None and body.get("temperature") is None:
        body["temperature"] = state.options.temperature
    return body
def chat_prompt(tok, req: schemas.Request) -> str:
    """A chat's prompt text: its tools go to the template as ``tools`` (as llama-server --jinja passes them);
    what the template does not render of tool use is rewritten first (tools.prepare)."""
    messages, extra = tools.prepare(tok.chat_template, req.messages, req.tools)
    return tok.apply_chat_template(messages, **extra)


def prompt_ids(state: ServerState, req: schemas.Request) -> list[int]:
    """Token ids of a request's prompt (runs in a worker thread: templates and long prompts take time)."""
    tok = state.tokenizer
    try:
        if req.kind == "chat":
            ids = tok.encode(chat_prompt(tok, req), add_special=False, special=True)
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


def choice_sampling(sampling: SamplingParams, index: int) -> SamplingParams:
    """Choice ``index``'s parameters: a given seed moves on by one per choice, so choices differ but repeat."""
    if index == 0 or sampling.seed is None:
        return sampling  # without a seed each choice draws its own
    return dataclasses.replace(sampling, seed=(sampling.seed + index) % 2 ** 64)


def constraints(state: ServerState, req: schemas.Request) -> list:
    """The request's grammar compiled for this model, one constraint per choice (each follows its own), or Nones
    (a worker thread: a large schema takes a while)."""
    if req.rules.grammar is None:
        return [None] * req.n
    kind, spec = req.rules.grammar
    try:
        return [state.grammars.constraint(kind, spec) for _ in range(req.n)]
    except GrammarError as exc:
        raise APIError(str(exc), param="response_format" if kind == "json_schema" else "grammar") from None


async def generate(request: HTTPRequest, state: ServerState, req: schemas.Request) -> Response:
    """The request's ``n`` choices as sequences after the same prompt, queued together; their events arrive in
    one inbox as (choice index, event)."""
    req.rules.check_vocabulary(state.model.config.vocab_size)
    ids = await run_in_threadpool(prompt_ids, state, req)
    grammars = await run_in_threadpool(constraints, state, req)
    room = state.batcher.max_sequence_tokens - len(ids)
    asked = state.options.max_tokens if req.max_tokens is None else req.max_tokens  # -n when the request gives none
    max_tokens = room if asked is None else min(asked, room)
    inbox = Inbox()
    post = Mailbox.of(asyncio.get_running_loop()).post

    def sink(index):
        return lambda ev: post(inbox, (index, ev))
    seqs = [Sequence(ids, max_tokens, choice_sampling(req.sampling, i), sink(i), stop=req.stop,
                     eog_ids=frozenset() if req.ignore_eos else state.tokenizer.eog_ids,
                     decoder=state.tokenizer.stream(), logit_bias=req.rules.logit_bias, constraint=grammar,
                     logprobs=req.rules.logprobs is not None) for i, grammar in enumerate(grammars)]
    state.batcher.submit(*seqs)
    reply = Reply(req, state.model_id, seqs, tools.output_format(state.tokenizer.chat_template), state.tokenizer)
    request.state.log_detail = reply.log_detail
    if req.stream:
        return SequenceStream(stream(reply, inbox), lambda: cancel(state, seqs))
    return await whole(request, state, reply, inbox)


class Inbox:
    """A request's events in arrival order, put by the event loop's thread (Mailbox delivers them there); ``take``
    waits for at least one and returns all that have arrived."""

    def __init__(self):
        self._items: list = []
        self._waiter: asyncio.Future | None = None

    def put(self, item) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def take(self) -> list:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        items, self._items = self._items, []
        return items


class Mailbox:
    """Hands events from the engine thread to one event loop's inboxes, in the order they were posted, waking the
    loop once per burst instead of once per event: the first event posted while none is pending schedules the
    delivery, later ones join it (a decode step's tokens of every stream are one wakeup, not one per stream)."""

    _loops: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Mailbox]" = weakref.WeakKeyDictionary()
    _loops_lock = threading.Lock()

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._lock = threading.Lock()
        self._pending: list[tuple[Inbox, tuple]] = []

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> "Mailbox":
        with cls._loops_lock:
            box = cls._loops.get(loop)
            if box is None:
                box = cls._loops[loop] = cls(loop)
            return box

    def post(self, inbox: Inbox, item: tuple) -> None:
        """From any thread; raises (as call_soon_threadsafe does) when the loop is closed."""
        with self._lock:
            self._pending.append((inbox, item))
            if len(self._pending) > 1:
                return  # a delivery is scheduled and has not run yet: it takes this one too
            try:
                self.loop.call_soon_threadsafe(self._deliver)
            except BaseException:
                self._pending.clear()  # nobody will read them
                raise

    def _deliver(self) -> None:
        with self._lock:
            items, self._pending = self._pending, []
        for inbox, item in items:
            inbox.put(item)


def cancel(state: ServerState, seqs: list[Sequence]) -> None:
    for seq in seqs:
        state.batcher.cancel(seq)


async def stream(reply: Reply, inbox: Inbox):
    """SSE chunks of a request's choices; SequenceStream frees the sequences however the response ends."""
    for chunk in reply.first_chunks():
        yield sse.event(chunk)
    while True:
        events = await inbox.take()  # text that piled up while the client was slow goes out as one chunk per choice
        texts: dict[int, str] = {}
        scored: dict[int, list] = {}  # (token, logprobs row) per choice, when asked for
        ends = []
        for index, (kind, value) in events:
            choice = reply.choices[index]
            if kind == "text":
                texts[index] = texts.get(index, "") + choice.text(value)
            elif kind == "logprobs":
                scored.setdefault(index, []).append(value)
            elif kind == "done":
                ends.append((choice, choice.done(value)))
            else:  # the engine failed, or the server is shutting down: the error, then the end all the same
                yield sse.event(value.body())
                yield sse.DONE
                return
        for index in dict.fromkeys([*texts, *scored]):
            text = texts.get(index, "")
            if index in scored:
                yield sse.event(reply.text_chunk(index, text, scored[index]))
            elif text:
                yield reply.text_event(index, text)
        for choice, tail in ends:
            for chunk in reply.end_chunks(choice, tail):
                yield sse.event(chunk)
        if ends and reply.done:  # only an end makes the reply done
            if reply.req.include_usage:
                yield sse.event({**reply.envelope(chunk=True), "choices": [], "usage": reply.usage()})
            yield sse.DONE
            return


async def whole(request: HTTPRequest, state: ServerState, reply: Reply, inbox: Inbox) -> Response:
    """The whole answer, once every choice ends; a client that disconnects meanwhile cancels them."""
    async def collect():
        while True:
            for index, (kind, value) in await inbox.take():
                choice = reply.choices[index]
                if kind == "text":
                    choice.text(value)
                elif kind == "logprobs":
                    choice.scored.append(value)
                elif kind == "done":
                    choice.done(value)
                    if reply.done:
                        return None
                else:
                    return value

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
            cancel(state, [c.seq for c in reply.choices])  # counted as cancelled where the batcher frees them
        for task in (watcher, collector):  # a cancelled task is done only once it has run its cancellation
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if collector.cancelled():
        raise ClientGone
    error = collector.result()
    if error is not None:
        cancel(state, [c.seq for c in reply.choices])  # the other choices are of no use now
        raise error
    return JSONResponse(reply.whole())


# -- embeddings ---------------------------------------------------------------------------------------------------
@endpoint("embeddings")
async def embeddings(request: HTTPRequest, state: ServerState) -> Response:
    """One L2-normalized vector per input, pooled as the model's GGUF says (mean when it does not)."""
    body = schemas.validate(schemas.EmbeddingBody, await read_json(state, request), n_vocab=state.tokenizer.n_vocab)
    try:
        pooling = pooling_of(state.model.config)
    except RocmforgeError as exc:  # a pooling_type llama.cpp does not know
        raise APIError(f"this model gives no sequence embedding: {exc}", param="model") from None
    if pooling is None:
        raise APIError("this model gives no sequence embedding (its GGUF's pooling_type is none or rank)",
                       param="model")
    d_model = state.model.config.d_model
    if body.dimensions is not None and body.dimensions != d_model:
        raise APIError(f"'dimensions' must be this model's {d_model} (embeddings are not truncated), got "
                       f"{body.dimensions}", param="dimensions")
    inputs = await run_in_threadpool(lambda: [x if isinstance(x, list) else
                                              state.tokenizer.encode(x, add_special=True) for x in body.input])
    n_ctx = state.batcher.max_sequence_tokens
    for i, ids in enumerate(inputs):
        if not ids:
            raise APIError(f"input {i} is empty: at least one token is needed", param="input")
        if len(ids) > n_ctx:
            raise APIError(f"input {i} has {len(ids)} tokens but the context holds {n_ctx}; shorten it",
                           param="input", code="context_length_exceeded")
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in inputs]

    def sink(future):
        return lambda ev: loop.call_soon_threadsafe(lambda: future.done() or future.set_result(ev))
    jobs = [Embedding(ids, pooling, sink(f)) for ids, f in zip(inputs, futures)]
    state.batcher.submit_embeddings(jobs)
    try:
        events = await asyncio.gather(*futures)
    finally:
        for job in jobs:  # a client that left: inputs not yet read are skipped
            job.cancelled = True
    data = []
    for i, (kind, value) in enumerate(events):
        if kind == "error":
            raise value
        vector = base64.b64encode(value.astype("<f4").tobytes()).decode() if body.encoding_format == "base64" \
            else value.tolist()
        data.append({"object": "embedding", "index": i, "embedding": vector})
    n_tokens = sum(map(len, inputs))
    return JSONResponse({"object": "list", "data": data, "model": body.model or state.model_id,
                         "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}})


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
