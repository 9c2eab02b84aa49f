"""``rocmforge serve``: an OpenAI-compatible HTTP server with continuous batching (docs/SERVING.md).

app.py (routes), schemas.py (request validation), errors.py (OpenAI-shaped errors), sse.py (streams),
metrics.py (Prometheus text), batcher.py (the engine loop), state.py (options, background loading),
security.py (Host check, API key sources), access_log.py (a line per request), connections.py (connection bound,
header deadline), server.py (uvicorn, in the foreground or a thread), loadtest.py (concurrent clients against one
at a time).
Needs the ``serve`` extra (starlette, uvicorn; loadtest also httpx)."""

from rocmforge_core.serve.state import ServeOptions, ServerState

__all__ = ["ServeOptions", "ServerState"]
