"""What a browser could be made to do to a local server, and the API key's sources.

A web page cannot read another origin's answers, but it can send requests: "simple" ones (form posts, text/plain
bodies) without asking first, which is why the app accepts only ``Content-Type: application/json`` bodies; and,
through DNS rebinding (a name of the attacker's that resolves to 127.0.0.1), requests whose answers it *can*
read, which carry the attacker's name in their Host header. ``HostCheck`` refuses those: a request must name
the bound address (any IP address when bound to all of them), localhost when bound to a loopback or to every
address, or a name given in ``allowed_hosts`` ("*" turns the check off).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from starlette.responses import JSONResponse

from rocmforge_core.errors import RocmforgeError
from rocmforge_core.serve.errors import APIError

API_KEY_ENV = "ROCMFORGE_API_KEY"
WILDCARDS = ("", "0.0.0.0", "::")


def _ip(name: str):
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def host_name(header: str) -> str:
    """The name or address of a Host header, without its port, brackets or trailing dot, in lower case."""
    header = header.strip().lower()
    if header.startswith("["):  # [::1]:8080
        return header[1:header.find("]")] if "]" in header else header
    if header.count(":") == 1:
        header = header.split(":")[0]
    return header.rstrip(".")


def is_loopback(host: str) -> bool:
    ip = _ip(host_name(host))
    return host_name(host) == "localhost" if ip is None else ip.is_loopback


def host_allowed(header: str | None, bound: str, allowed: tuple[str, ...] = ()) -> bool:
    if header is None or "*" in allowed:  # no Host header: HTTP/1.0, which no browser sends
        return True
    name = host_name(header)
    if name in {host_name(a) for a in allowed}:
        return True
    ip, bound_name = _ip(name), host_name(bound)
    if bound_name in WILDCARDS:
        return ip is not None or name == "localhost"
    if is_loopback(bound_name):
        return name == "localhost" or (ip is not None and ip.is_loopback)
    bound_ip = _ip(bound_name)
    return ip == bound_ip if bound_ip is not None else name == bound_name


class HostCheck:
    """ASGI middleware answering 400 to HTTP requests whose Host header this server does not answer to."""

    def __init__(self, app, state):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
            o = self.state.options
            if not host_allowed(header, o.host, o.allowed_hosts):
                name = host_name(header)
                error = APIError(f"the Host header {header!r} names none of this server's addresses, a guard against "
                                 f"DNS rebinding; start it with --allowed-hosts {name} to answer to that name",
                                 code="host_not_allowed")
                self.state.metrics.request("other", 400)
                await JSONResponse(error.body(), status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def api_key(flag: str | None, file: str | None) -> str | None:
    """The API key: --api-key, else the file --api-key-file names (its text, without surrounding whitespace), else
    $ROCMFORGE_API_KEY; None when none is given."""
    if flag is not None and file is not None:
        raise RocmforgeError("give the API key once: --api-key or --api-key-file, not both")
    if file is not None:
        try:
            key = Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise RocmforgeError(f"cannot read the API key file {file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise RocmforgeError(f"the API key file {file} is not UTF-8 text") from None
        if not key:
            raise RocmforgeError(f"the API key file {file} is empty")
        return key
    if flag is not None:
        if not flag.strip():
            raise RocmforgeError("--api-key is empty")
        return flag
    return os.environ.get(API_KEY_ENV, "").strip() or None
