"""A load generator for ``rocmforge serve``: N streaming requests from C concurrent clients, then the same
requests one at a time, with aggregate throughput of both and a check that every answer matches.

    python -m rocmforge_core.serve.loadtest --url http://127.0.0.1:8080 --clients 32 --requests 64
    python -m rocmforge_core.serve.loadtest --model FILE --backend cpu --parallel 32   # an in-process server

Requests are greedy (temperature 0) with a frequency penalty, so each answer is deterministic and differs from
the others; prompts differ in length so prefills of several chunks mix with running decodes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass

import httpx

WORDS = "the model is a token hello world".split()


@dataclass
class Result:
    text: str
    completion_tokens: int
    first_token_s: float
    total_s: float
    finish_reason: str


def requests_for(n: int, max_tokens: int, long_every: int = 8) -> list[dict]:
    """n distinct greedy completion requests; every ``long_every``-th has a long prompt (several prefill chunks)."""
    out = []
    for i in range(n):
        words = 60 if long_every and i % long_every == long_every - 1 else 3 + i % 7
        prompt = " ".join(WORDS[(i * 3 + j * (i % 5 + 1)) % len(WORDS)] for j in range(words))
        out.append({"prompt": f"{i} {prompt}", "max_tokens": max_tokens, "temperature": 0,
                    "frequency_penalty": 1.0, "ignore_eos": True, "stream": True,
                    "stream_options": {"include_usage": True}})
    return out


async def stream_one(client: httpx.AsyncClient, body: dict) -> Result:
    start = time.perf_counter()
    first = None
    pieces, usage, finish = [], {}, ""
    async with client.stream("POST", "/v1/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {(await r.aread()).decode(errors='replace')}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:
                raise RuntimeError(event["error"]["message"])
            if event.get("usage"):
                usage = event["usage"]
            for choice in event["choices"]:
                if choice["text"] and first is None:
                    first = time.perf_counter() - start
                pieces.append(choice["text"])
                finish = choice["finish_reason"] or finish
    return Result("".join(pieces), usage.get("completion_tokens", -1), first or 0.0, time.perf_counter() - start,
                  finish)


async def run_load(url: str, bodies: list[dict], clients: int, api_key: str | None = None,
                   timeout: float = 600.0) -> tuple[list[Result], float]:
    """Send ``bodies`` from ``clients`` concurrent clients (each takes the next request when done); the results
    in request order and the wall time."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    results: list[Result | None] = [None] * len(bodies)
    todo = iter(range(len(bodies)))

    async def worker(client):
        for i in todo:
            results[i] = await stream_one(client, bodies[i])

    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits, headers=headers) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        wall = time.perf_counter() - start
    return results, wall


def summary(name: str, results: list[Result], wall: float) -> dict:
    tokens = sum(r.completion_tokens for r in results)
    ttft = sorted(r.first_token_s for r in results)
    return {"name": name, "requests": len(results), "tokens": tokens, "wall_s": round(wall, 3),
            "tokens_per_s": round(tokens / wall, 2), "ttft_median_s": round(ttft[len(ttft) // 2], 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rocmforge_core.serve.loadtest", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="a running server; without it one is started in-process from --model")
    p.add_argument("--model", help="GGUF model for the in-process server")
    p.add_argument("--backend", default=None)
    p.add_argument("--parallel", type=int, default=32)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--api-key")
    args = p.parse_args(argv)
    server = None
    url = args.url
    if url is None:
        if not args.model:
            p.error("give --url of a running server or --model to start one")
        from rocmforge_core.serve import ServeOptions
        from rocmforge_core.serve.server import ServerThread
        server = ServerThread(ServeOptions(model=args.model, backend=args.backend, parallel=args.parallel,
                                           max_queue=max(64, args.requests))).start()
        url = server.url
    try:
        bodies = requests_for(args.requests, args.max_tokens)
        # warm-up, not measured: kernels compile (JIT backends) and decode steps of every batch size get placed
        asyncio.run(run_load(url, bodies[:args.clients], args.clients, args.api_key))
        asyncio.run(run_load(url, bodies[:2], 1, args.api_key))
        alone, alone_wall = asyncio.run(run_load(url, bodies, 1, args.api_key))
        together, together_wall = asyncio.run(run_load(url, bodies, args.clients, args.api_key))
    finally:
        if server is not None:
            server.stop()
    mismatches = [i for i, (a, b) in enumerate(zip(alone, together)) if (a.text, a.completion_tokens) !=
                  (b.text, b.completion_tokens)]
    rows = [summary("one at a time", alone, alone_wall), summary(f"{args.clients} clients", together, together_wall)]
    for row in rows:
        print(json.dumps(row))
    print(json.dumps({"speedup": round(rows[1]["tokens_per_s"] / rows[0]["tokens_per_s"], 2),
                      "mismatches": mismatches}))
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
