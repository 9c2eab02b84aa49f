"""Several `rocmforge serve` replicas behind Ray Serve (`rocmforge serve-ray`, docs/SERVING.md "Scale-out").

Each Ray Serve replica is a Ray actor holding one whole rocmforge server: ``ServerThread`` (the app, the batcher
and the engine, as `rocmforge serve` runs them) listening on 127.0.0.1 at a free port inside the replica's
process, and a proxy that forwards every request Ray's HTTP proxy routes to it (method, path, query, body, the
Authorization and Content-Type headers) and streams the answer back as it comes (server-sent events included).
A replica asks Ray for ``num_gpus`` GPUs (Ray makes only those visible to its process: one replica per GPU) or
``num_cpus`` CPUs; Ray balances requests over the replicas, each continuously batching its own. Every answer
carries ``x-rocmforge-replica`` (host:pid of the replica's process), so a client can see who answered. Each
replica checks the API key and validates requests itself; the Host check sees the proxy's 127.0.0.1, so put
Ray's proxy behind whatever guards its address. Needs the ``ray`` extra (ray[serve])."""

from __future__ import annotations

import dataclasses
import os
import socket

import httpx
from ray import serve
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from rocmforge_core.serve.state import ServeOptions

REPLICA_HEADER = "x-rocmforge-replica"
FORWARDED_HEADERS = ("authorization", "content-type", "accept")  # what the replica's server reads of a request
PASSED_BACK = ("content-type", "cache-control", "retry-after", "x-request-id")  # of its answer


class Replica:
    """One rocmforge server in this Ray actor, and the proxy to it (the Ray Serve deployment's class)."""

    def __init__(self, options: ServeOptions, load_timeout: float = 600.0):
        from rocmforge_core.serve.server import ServerThread
        self.server = ServerThread(dataclasses.replace(options, host="127.0.0.1")).start(timeout=load_timeout)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.client = httpx.AsyncClient(base_url=self.server.url, timeout=httpx.Timeout(None, connect=30.0))

    async def __call__(self, request: Request) -> Response:
        url = httpx.URL(path=request.url.path, query=request.url.query.encode())
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_HEADERS}
        upstream = await self.client.send(
            self.client.build_request(request.method, url, headers=headers, content=await request.body()),
            stream=True)
        back = {k: v for k, v in upstream.headers.items() if k.lower() in PASSED_BACK}
        back[REPLICA_HEADER] = self.name
        if upstream.headers.get("content-type", "").startswith("text/event-stream"):
            async def relay():
                try:
                    async for chunk in upstream.aiter_raw():
                        yield chunk
                finally:  # a client that leaves closes the replica's stream, which cancels the sequence
                    await upstream.aclose()
            return StreamingResponse(relay(), status_code=upstream.status_code, headers=back)
        body = await upstream.aread()
        await upstream.aclose()
        return Response(body, status_code=upstream.status_code, headers=back)

    def check_health(self) -> None:
        """Ray Serve's health probe: a replica whose server thread or engine died is replaced."""
        if not self.server.thread.is_alive() or not self.server.state.ready:
            raise RuntimeError(f"replica {self.name}: the rocmforge server stopped "
                               f"({self.server.state.error or 'its thread ended'})")

    def __del__(self):
        server = getattr(self, "server", None)
        if server is not None:
            server.stop()


def application(options: ServeOptions, *, replicas: int, num_gpus: float = 0.0, num_cpus: float = 1.0,
                name: str = "rocmforge"):
    """The Ray Serve application: ``replicas`` copies of a rocmforge server over ``options``, each asking Ray
    for ``num_gpus`` GPUs and ``num_cpus`` CPUs."""
    deployment = serve.deployment(Replica, name=name, num_replicas=replicas,
                                  ray_actor_options={"num_gpus": num_gpus, "num_cpus": num_cpus},
                                  max_ongoing_requests=max(options.parallel + options.max_queue, 1),
                                  health_check_period_s=10, health_check_timeout_s=30)
    return deployment.bind(options)


def slots(num_gpus: float, num_cpus: float) -> int:
    """Replicas the running Ray cluster has room for: one per ``num_gpus`` GPUs, or per ``num_cpus`` CPUs."""
    import ray
    resources = ray.cluster_resources()
    if num_gpus > 0:
        return int(resources.get("GPU", 0) // num_gpus)
    return int(resources.get("CPU", 0) // num_cpus) if num_cpus > 0 else 1
