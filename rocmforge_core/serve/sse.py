"""Server-sent events as OpenAI streams them: ``data: <json>`` blocks, ended by ``data: [DONE]``."""

from __future__ import annotations

import json

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering of a live stream
DONE = b"data: [DONE]\n\n"


def event(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
