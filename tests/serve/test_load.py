"""The load test: 32 concurrent streaming clients for a fixed number of requests on the cpu backend (the
reference backend when cpu is not installed), against one-at-a-time serving of the same requests.

Checked: every answer equals the same request run alone (greedy), batching really happened (decode batches
larger than one), and afterwards no sequence or KV block is left and resident memory is back at its baseline.
Throughput of both runs is printed (docs/PERF.md states the factor, measured with the loadtest command);
speed is not asserted here."""

from __future__ import annotations

import asyncio

from conftest import wait_idle
from rocmforge_core.registry import get_registry
from rocmforge_core.serve import ServeOptions
from rocmforge_core.serve.loadtest import requests_for, run_load, summary
from rocmforge_core.serve.server import ServerThread

CLIENTS, REQUESTS, MAX_TOKENS = 32, 64, 16
RSS_SLACK = 16 << 20  # allocator noise; a leaked sequence's KV or per-request state grows far past it per run


def load_backend() -> str:
    cpu = get_registry().backends.get("cpu")
    return "cpu" if cpu is not None and cpu.available() else "reference"


def test_32_streaming_clients_match_alone_and_leave_nothing(tiny_chat_model, capsys):
    backend = load_backend()
    bodies = requests_for(REQUESTS, MAX_TOKENS)
    with ServerThread(ServeOptions(model=tiny_chat_model, backend=backend, parallel=CLIENTS,
                                   max_queue=REQUESTS, prefill_chunk=64)) as srv:
        alone, alone_wall = asyncio.run(run_load(srv.url, bodies, 1))
        warm, _ = asyncio.run(run_load(srv.url, bodies, CLIENTS))  # first sight of every batch size
        baseline = wait_idle(srv.url)
        together, together_wall = asyncio.run(run_load(srv.url, bodies, CLIENTS))
        after = wait_idle(srv.url)

    assert all(r.completion_tokens == MAX_TOKENS for r in alone)
    for i, (a, w, t) in enumerate(zip(alone, warm, together)):
        assert (w.text, w.completion_tokens) == (a.text, a.completion_tokens), f"request {i} (warm-up run)"
        assert (t.text, t.completion_tokens) == (a.text, a.completion_tokens), f"request {i}"
    assert len({r.text for r in alone}) > REQUESTS // 2  # the answers differ, so equality means something

    assert after["rocmforge_decode_batch_max"] > CLIENTS // 2
    steps = after["rocmforge_decode_steps_total"] - baseline["rocmforge_decode_steps_total"]
    rows = after["rocmforge_decode_sequences_total"] - baseline["rocmforge_decode_sequences_total"]
    assert rows / steps > 4, "the concurrent run should decode several sequences per step"

    for key in ("rocmforge_sequences_running", "rocmforge_queue_depth", "rocmforge_kv_blocks_used"):
        assert after[key] == 0, key
    grew = after["rocmforge_process_resident_memory_bytes"] - baseline["rocmforge_process_resident_memory_bytes"]
    assert grew < RSS_SLACK, f"resident memory grew by {grew / 2**20:.1f} MiB over one load run"

    with capsys.disabled():
        one, many = summary("one at a time", alone, alone_wall), summary(f"{CLIENTS} clients", together,
                                                                         together_wall)
        print(f"\n[serve load, {backend}] {one}\n[serve load, {backend}] {many}\n"
              f"[serve load, {backend}] speedup {many['tokens_per_s'] / one['tokens_per_s']:.2f}x, "
              f"mean decode batch {rows / steps:.1f}, RSS change {grew / 2**20:+.1f} MiB")

