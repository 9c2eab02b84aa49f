"""Running the app under uvicorn: in the foreground (``rocmforge serve``) or in a background thread on a socket
bound beforehand (tests, benchmarks, embedding the server in another program). Either way connections are
bounded and timed (connections.py), and stopping gives running requests a grace period to finish in, after which
each ends properly (a stream with an error event and [DONE], a whole answer with a 503) before uvicorn closes."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time

import uvicorn

from rocmforge_core.serve.app import create_app
from rocmforge_core.serve.connections import connection_limit, protocol_class
from rocmforge_core.serve.state import ServeOptions, ServerState

SHUTDOWN_MARGIN = 5.0  # seconds past the grace period before uvicorn cancels what is still running


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)  # from now on connections queue, even before uvicorn starts accepting
    sock.set_inheritable(True)
    return sock


def config(state: ServerState, log_level: str = "info") -> uvicorn.Config:
    # h11 (always installed with uvicorn), with a header deadline and a connection bound; the app logs accesses
    o = state.options
    protocol = protocol_class(o.read_timeout, connection_limit(o.max_connections))
    return uvicorn.Config(create_app(state), http=protocol, log_level=log_level, access_log=False,
                          timeout_graceful_shutdown=o.shutdown_grace + SHUTDOWN_MARGIN)


class Server(uvicorn.Server):
    """uvicorn's server, telling the batcher to drain when it starts shutting down (SIGINT, SIGTERM,
    ``should_exit``): uvicorn then waits for the responses to end, which the batcher ends within the grace
    period."""

    def __init__(self, state: ServerState, log_level: str = "info"):
        super().__init__(config(state, log_level))
        self.state = state

    async def shutdown(self, sockets=None) -> None:
        self.state.drain()
        await super().shutdown(sockets=sockets)


class ServerThread:
    """The server on 127.0.0.1 (port 0: any free one) in a daemon thread; ``url`` once ``start`` returns."""

    def __init__(self, options: ServeOptions, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        self.state = ServerState(dataclasses.replace(options, host=host))
        self.sock = bind(host, port)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.server = Server(self.state, log_level)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="rocmforge-http", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, wait_ready: bool = True, timeout: float = 300.0) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.01)
        if wait_ready:
            self.state.loaded.wait(max(0.0, deadline - time.monotonic()))
            if not self.state.ready:
                raise RuntimeError(f"the model did not load: {self.state.error or 'timed out'}")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(self.state.options.shutdown_grace + 30)
        self.sock.close()

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
