"""Server-sent events as OpenAI streams them: ``data: <json>`` blocks, ended by ``data: [DONE]``."""

from __future__ import annotations

import json

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering of a live stream
DONE = b"data: [DONE]\n\n"
# json.dumps(payload, ensure_ascii=False, separators=(",", ":")), without building an encoder per call
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
string = json.encoder.encode_basestring  # a str as that encoder writes it (ensure_ascii=False)


def event(payload: dict) -> bytes:
    return b"data: " + _encode(payload).encode() + b"\n\n"
