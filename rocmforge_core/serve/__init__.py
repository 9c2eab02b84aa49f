"""``rocmforge serve``: an OpenAI-compatible HTTP server with continuous batching (docs/SERVING.md).

app.py (routes), schemas.py (request validation), errors.py (OpenAI-shaped errors), sse.py (streams),
metrics.py (Prometheus text), batcher.py (the engine loop), state.py (options, background loading),
server.py (uvicorn, in the foreground or a thread). Needs the ``serve`` extra (starlette, uvicorn)."""

from rocmforge_core.serve.state import ServeOptions, ServerState

__all__ = ["ServeOptions", "ServerState"]
