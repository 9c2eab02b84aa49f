"""What a connection may hold: uvicorn's h11 protocol with a deadline for a request's headers and a bound on open
connections, and accept() failures logged once in a while instead of once per attempt.

uvicorn reads headers without a deadline (a client that sends half a request holds its connection forever) and
accepts connections until the process runs out of file descriptors, after which every accept() attempt logs a
traceback. Here a connection beyond ``max_connections`` is answered 503 and closed at once, and one whose next
request's headers have not arrived ``read_timeout`` seconds after it opened (or after its previous response)
is answered 408 and closed. The body's deadline is the app's (``app.read_json``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from http import HTTPStatus

from uvicorn.protocols.http.h11_impl import H11Protocol

from rocmforge_core.serve.errors import APIError

log = logging.getLogger("rocmforge.serve")

RESERVED_FDS = 128  # file descriptors kept for the model file, the runtime's threads and libraries, logs
ACCEPT_LOG_INTERVAL = 60.0  # seconds between two log lines about failing accept() calls


def connection_limit(requested: int) -> int:
    """``requested``, lowered to what the open-file limit leaves (with a warning): past it accept() fails."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = soft - RESERVED_FDS if soft != resource.RLIM_INFINITY else requested
    if requested > room:
        log.warning("rocmforge: warning: --max-connections %d exceeds what the open-file limit of %d leaves "
                    "(ulimit -n); using %d", requested, soft, max(room, 1))
        return max(room, 1)
    return requested


def raw_response(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 error response (OpenAI-shaped JSON), written before h11 has seen a request."""
    body = json.dumps(APIError(message, status=status).body()).encode()
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode() + body


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a connection bound (class attributes, set by
    ``protocol_class``)."""
    read_timeout: float = 30.0
    max_connections: int = 512

    def connection_made(self, transport) -> None:
        self._read_timer: asyncio.TimerHandle | None = None
        self._refused = len(self.server_state.connections) >= self.max_connections
        if self._refused:  # answered without reading: the descriptor is free again at once
            self.transport = transport
            transport.write(raw_response(503, f"the server holds {self.max_connections} connections already; "
                                         "retry later"))
            transport.close()
            return
        super().connection_made(transport)
        self._start_read_timer()

    def connection_lost(self, exc) -> None:
        self._stop_read_timer()
        if not self._refused:
            super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:  # a request's headers are in
            self._stop_read_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request already received
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._start_read_timer()

    def _start_read_timer(self) -> None:
        self._stop_read_timer()
        self._read_timer = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _stop_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if not self.transport.is_closing():
            self.transport.write(raw_response(408, f"the request's headers did not arrive within "
                                              f"{self.read_timeout:g} s"))
            self.transport.close()


def protocol_class(read_timeout: float, max_connections: int) -> type[LimitedH11Protocol]:
    return type("LimitedH11Protocol", (LimitedH11Protocol,),
                {"read_timeout": read_timeout, "max_connections": max_connections})


class AcceptErrors:
    """An event-loop exception handler: asyncio reports each failed accept() (EMFILE: out of file descriptors)
    with a traceback and retries a second later; this logs the first one and then one line per
    ACCEPT_LOG_INTERVAL with the count since. Other errors go to the loop's default handler."""

    def __init__(self, interval: float = ACCEPT_LOG_INTERVAL):
        self.interval = interval
        self.last = -float("inf")
        self.unlogged = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        if not context.get("message", "").startswith("socket.accept()"):
            loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if now - self.last < self.interval:
            self.unlogged += 1
            return
        since = f" ({self.unlogged} more since the last report)" if self.unlogged else ""
        log.error("rocmforge: cannot accept connections: %s%s; raise the open-file limit (ulimit -n) or lower "
                  "--max-connections", context.get("exception"), since)
        self.last, self.unlogged = now, 0
