"""A load generator for OpenAI-compatible completion servers (``rocmforge serve``, llama.cpp's llama-server):
the same N streaming /v1/completions requests sent by each of several client counts, with the aggregate
throughput of each (completion tokens / wall time) and a check that every answer equals the one-at-a-time answer.

    python -m rocmforge_core.serve.loadtest --url http://127.0.0.1:8080 --clients 1,8,32 --requests 64
    python -m rocmforge_core.serve.loadtest --url URL --clients 8,32 --no-compare   # only measure
    python -m rocmforge_core.serve.loadtest --model FILE --backend cpu --parallel 32   # an in-process server

Requests are greedy (temperature 0) with a frequency penalty and ignore_eos, so each answer is deterministic,
differs from the others and is exactly --max-tokens long; they ask for no prompt cache (llama-server's
cache_prompt; rocmforge has none), so every request prefills its whole prompt; prompts differ in length so
prefills of several chunks mix with running decodes. Each client count gets an unmeasured warm-up pass first
(one request per client, at least 8: kernels compile, prefill and decode step shapes get placed). Prints one
JSON document; exits 1 when an answer differs from the one-at-a-time answer.
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
                    "stream_options": {"include_usage": True},
                    "cache_prompt": False})  # llama-server would reuse the KV of a prompt seen in the warm-up
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
    # A connection per request: llama-server closes a kept-alive connection after a stream (so reusing it fails
    # with "Server disconnected"), and a loopback connect costs well under a millisecond.
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=0)
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


WARMUP_REQUESTS = 8  # at least: one long prompt among them (requests_for), so every prefill size is seen


def client_counts(text: str) -> list[int]:
    try:
        counts = [int(c) for c in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"--clients takes positive counts separated by commas, got {text!r}")
    return counts


def sweep(url: str, bodies: list[dict], counts: list[int], compare: bool, api_key: str | None = None,
          timeout: float = 600.0) -> dict:
    """Each client count sends all ``bodies`` after a warm-up pass; with ``compare``, the answers of every count
    are checked against those of one client (a one-client pass goes first, added when ``counts`` has none)."""
    if compare:
        counts = [1, *(c for c in counts if c != 1)]
    runs, alone = [], None
    for clients in counts:
        asyncio.run(run_load(url, bodies[:max(clients, WARMUP_REQUESTS)], clients, api_key, timeout))
        results, wall = asyncio.run(run_load(url, bodies, clients, api_key, timeout))
        row = {"clients": clients, **summary(f"{clients} client{'s' * (clients != 1)}", results, wall),
               "short": sum(r.completion_tokens != b["max_tokens"] for r, b in zip(results, bodies))}
        if clients == 1:
            alone = results
        if compare:
            row["mismatches"] = [i for i, (a, b) in enumerate(zip(alone, results))
                                 if (a.text, a.completion_tokens) != (b.text, b.completion_tokens)]
        runs.append(row)
    return {"url": url, "requests": len(bodies), "max_tokens": bodies[0]["max_tokens"], "runs": runs,
            "speedup": round(runs[-1]["tokens_per_s"] / runs[0]["tokens_per_s"], 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rocmforge_core.serve.loadtest", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="a running server; without it one is started in-process from --model")
    p.add_argument("--model", help="GGUF model for the in-process server")
    p.add_argument("--backend", default=None)
    p.add_argument("--parallel", type=int, default=32)
    p.add_argument("--clients", type=client_counts, default=[32],
                   help="concurrent clients, or several counts to measure in turn (1,8,32); default 32")
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--no-compare", dest="compare", action="store_false",
                   help="only measure: no one-client pass added, answers not compared (for servers whose batched "
                        "answers may differ from their answers alone)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds one request may take")
    p.add_argument("--api-key")
    args = p.parse_args(argv)
    if args.requests < max(args.clients) or args.max_tokens < 1:
        p.error("--requests must be at least the largest client count and --max-tokens at least 1")
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
        report = sweep(url, requests_for(args.requests, args.max_tokens), args.clients, args.compare,
                       args.api_key, args.timeout)
    finally:
        if server is not None:
            server.stop()
    print(json.dumps(report, indent=1))
    return 1 if any(run.get("mismatches") for run in report["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
