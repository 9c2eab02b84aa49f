"""One log line per HTTP request, when its response has ended (a stream included): client, method, path, status,
seconds, and for generation requests the tokens and how the answer ended, e.g.

    127.0.0.1:50312 "POST /v1/chat/completions" 200 1.482 s: prompt 23, completion 64 tokens, length

Logged at INFO on the "rocmforge.access" logger (``--log-level warning`` silences it). A handler adds its detail
as a callable in the request's state (``request.state.log_detail``), read when the response is over. Status 499:
the client left before its answer was complete.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("rocmforge.access")


class AccessLog:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [0]

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client")
            where = f"{client[0]}:{client[1]}" if client else "-"
            detail = scope.get("state", {}).get("log_detail")
            log.info('%s "%s %s" %d %.3f s%s', where, scope["method"], scope["path"], status[0] or 500,
                     time.perf_counter() - start, f": {detail()}" if detail else "")
