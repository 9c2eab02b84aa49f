"""Host time per step of the server: `rocmforge serve`'s real HTTP side and batcher over an engine whose step does
no computing, so what is left is what the host spends around each step.

  .venv/bin/python scripts/serve-host-bench.py [--clients 1,8,32] [--device-ms 4] [--model FILE]

The server (ServerThread, reference backend, --parallel 32) runs in this process; ``Engine.step`` is replaced by
a fake that reserves the KV blocks as the real step does, sleeps --device-ms (prefill steps twice that), as a GPU
sync would, releasing the GIL, and returns one fixed token for every row. The load is the project's load generator
(`python -m rocmforge_core.serve.loadtest`, a separate process: --requests streaming completions x --max-tokens
tokens, an unmeasured warm-up pass first), run once per client count. Printed per count: tokens/s (completion
tokens / wall time), the ideal with no host time (clients x 1000 / device-ms), and the mean and median host time
between two decode steps of a full batch (one step's return to the next step's call: engine-thread work plus
whatever it waits for the GIL or a core). --device-ms 0 gives the pure host ceiling. Without --model a tiny
synthetic llama with the Llama-3 vocabulary is written first (`rocmforge_core.cli.bench --write-synthetic
llama-tiny:Q4_K_M --vocab-from .carry/ggml-vocab-llama-bpe.gguf`). Runs on CPU, no GPU needed; on a small machine
the load generator shares the cores with the server. Figures go to docs/PERF.md."""

from __future__ import annotations

import argparse
import json
import statistics
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VOCAB = ROOT / ".carry" / "ggml-vocab-llama-bpe.gguf"


def tiny_model(directory: str) -> str:
    out = os.path.join(directory, "llama-tiny.gguf")
    subprocess.run([sys.executable, "-m", "rocmforge_core.cli.bench", "--write-synthetic", "llama-tiny:Q4_K_M",
                    "--vocab-from", str(VOCAB), "--out", out], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return out


class FakeDevice:
    """Stands in for ``Engine.step``: KV blocks reserved as the real step reserves them, a sleep, one token."""

    def __init__(self, engine, token: int, device_ms: float):
        self.engine, self.token, self.device_s = engine, token, device_ms / 1000
        self.reset()

    def reset(self) -> None:
        self.last = None  # when the previous step returned, and its phase
        self.gaps: dict[int, list[float]] = {}  # decode batch size -> host seconds before each decode step

    def step(self, tokens, slots, positions, out_rows, phase, sampling=None):
        t0 = time.perf_counter()
        if phase == "decode" and self.last is not None and self.last[1] == "decode":
            self.gaps.setdefault(len(out_rows), []).append(t0 - self.last[0])
        cache, ends = self.engine.cache, {}
        for s, p in zip(slots, positions):
            if s != cache.pad_slot and p >= ends.get(s, 0):
                ends[s] = p + 1
        for s, e in ends.items():
            cache.reserve(s, e)
        time.sleep(self.device_s * (1 if phase == "decode" else 2))
        self.last = (time.perf_counter(), phase)
        return types.SimpleNamespace(tokens=[self.token] * len(out_rows), logprobs=None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="a GGUF (default: write a tiny synthetic llama)")
    p.add_argument("--clients", default="1,8,32")
    p.add_argument("--device-ms", type=float, default=4.0)
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    args = p.parse_args()

    from rocmforge_core.serve import ServeOptions
    from rocmforge_core.serve.server import ServerThread

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or tiny_model(tmp)
        srv = ServerThread(ServeOptions(model=model, backend="reference", parallel=32, warm_up=False,
                                        max_queue=max(64, args.requests)))
        srv.start()
        try:
            engine = srv.state.engine
            fake = FakeDevice(engine, srv.state.tokenizer.encode(" hello", add_special=False)[0], args.device_ms)
            engine.step = fake.step
            rows = []
            for clients in (int(c) for c in args.clients.split(",")):
                fake.reset()
                out = subprocess.run([sys.executable, "-m", "rocmforge_core.serve.loadtest", "--url", srv.url,
                                      "--clients", str(clients), "--requests", str(args.requests), "--max-tokens",
                                      str(args.max_tokens), "--no-compare"], capture_output=True, text=True,
                                     check=True, cwd=ROOT)
                run = json.loads(out.stdout)["runs"][0]
                full = fake.gaps.get(clients, [])
                every = [g for gs in fake.gaps.values() for g in gs]
                rows.append({"clients": clients, "tokens_per_s": run["tokens_per_s"],
                             "ideal_tokens_per_s": round(clients * 1000 / args.device_ms) if args.device_ms else None,
                             "host_ms_full_batch": round(1000 * sum(full) / len(full), 3) if full else None,
                             "host_ms_full_batch_median": round(1000 * statistics.median(full), 3) if full else None,
                             "full_batch_steps": len(full),
                             "host_ms_all_decode": round(1000 * sum(every) / len(every), 3) if every else None,
                             "short": run["short"]})
        finally:
            srv.stop()
    if args.json:
        print(json.dumps({"device_ms": args.device_ms, "requests": args.requests, "max_tokens": args.max_tokens,
                          "runs": rows}, indent=1))
        return
    print(f"device {args.device_ms:g} ms a decode step, {args.requests} requests x {args.max_tokens} tokens")
    print("host ms between two decode steps: mean and median over full-batch steps, mean over all decode steps")
    print(f"{'clients':>7} {'tokens/s':>10} {'ideal':>8} {'mean':>8} {'median':>8} {'all':>8}")
    for r in rows:
        cells = [r[k] if r[k] is not None else "-" for k in ("host_ms_full_batch", "host_ms_full_batch_median",
                                                              "host_ms_all_decode")]
        print(f"{r['clients']:>7} {r['tokens_per_s']:>10,.0f} {r['ideal_tokens_per_s'] or '-':>8} "
              + " ".join(f"{c:>8}" for c in cells))


if __name__ == "__main__":
    main()
