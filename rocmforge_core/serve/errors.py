"""Errors a client can cause, answered as OpenAI-shaped JSON: {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

from rocmforge_core.errors import RocmforgeError

TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
         405: "invalid_request_error", 408: "invalid_request_error", 413: "invalid_request_error",
         415: "invalid_request_error", 503: "server_overloaded", 500: "server_error"}


class APIError(RocmforgeError):
    """A request the server refuses: one sentence, an HTTP status and, when one field is at fault, its name."""

    def __init__(self, message: str, status: int = 400, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.param, self.code = status, param, code

    def body(self) -> dict:
        return {"error": {"message": str(self), "type": TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}
