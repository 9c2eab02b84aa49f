"""Kernel timings on the GPU for the Llama-3.2-1B shapes (run by scripts/gpu-check.sh, not by pytest).

Each kernel is captured 20 times into a graph and the replays are timed with device events, so launch overhead
from Python stays out; the figure is device time per call. Prints one line per kernel and writes JSON to argv[1].
"""

from __future__ import annotations

import json
import sys

import numpy as np

from rocmforge_core.registry import get_registry

LAYER = {"attn_q": (2048, 2048), "attn_k": (512, 2048), "attn_v": (512, 2048), "attn_output": (2048, 2048),
         "ffn_gate": (8192, 2048), "ffn_up": (8192, 2048), "ffn_down": (2048, 8192)}
OUTPUT = (128256, 2048)
REPS = 20
PRODUCTS = {"1b ffn_gate": (8192, 2048), "1b ffn_down": (2048, 8192), "8b ffn_gate": (14336, 4096),
            "8b ffn_down": (4096, 14336)}


def timed(hip, fn) -> float:
    """Device microseconds per call of ``fn`` (captured REPS times, replayed 5 times). Each call's launches are
    sent before the next call (``flush``), so that repeated products of one input are not merged into one launch
    as neighbours in a captured step are."""
    fn()
    graph = hip.capture(lambda: [(fn(), hip.flush()) for _ in range(REPS)])
    graph()
    ms = hip.runtime.elapsed_ms(lambda: [graph() for _ in range(5)])
    return ms * 1000 / (5 * REPS)


def products(hip, kernels, rng) -> list[dict]:
    """Decode products alone (rf_mmv for one row, rf_mmq for more) at the 1B and 8B shapes: device time and the
    rate the weight streams at (read once per call whatever m is)."""
    rows = []
    for fmt_name in ("Q4_0", "Q4_K", "Q6_K", "Q8_0"):
        fmt = get_registry().format(fmt_name)
        for name, (n, k) in PRODUCTS.items():
            w = hip.upload_weight(fmt.random_weight(rng, name, (n, k)))
            for m in (1, 8, 32, 64):
                x = hip.from_host(rng.standard_normal((m, k)).astype(np.float32))
                us = timed(hip, lambda: kernels["matmul"].fn(x, w))
                rows.append({"kernel": f"product m={m} {fmt_name} {name} {n}x{k}", "us": us,
                             "GB/s": n * fmt.row_bytes(k) / us / 1e3})
            del w
    return rows


def main(out_path: str, only: str = "") -> None:
    """``only``: "products" for the decode products' table alone."""
    reg = get_registry()
    hip = reg.backend("hip")
    kernels = {k.op: k for k in reg.kernels if k.backend == "hip"}
    rng = np.random.default_rng(0)
    rows = products(hip, kernels, rng) if only == "products" else every_kernel(hip, kernels, rng)
    for r in rows:
        extra = "".join(f"  {k} {v:.1f}" for k, v in r.items() if k not in ("kernel", "us"))
        print(f"{r['kernel']:<48} {r['us']:9.2f} us{extra}")
    with open(out_path, "w") as f:
        json.dump({"device": hip.devices()[0].name, "rows": rows}, f, indent=1)


def every_kernel(hip, kernels, rng) -> list[dict]:
    """Each op's kernels at the 1B shapes, then the decode steps (decode_breakdown)."""
    reg, rows = get_registry(), []
    for fmt_name in ("Q4_0", "Q4_K", "Q6_K", "Q8_0"):
        fmt = reg.format(fmt_name)
        token_us, token_bytes = 0.0, 0
        shapes = [(name, shape) for name, shape in LAYER.items()] + [("output", OUTPUT)]
        for name, (n, k) in shapes:
            w = hip.upload_weight(fmt.random_weight(rng, name, (n, k)))
            x = hip.from_host(rng.standard_normal((1, k)).astype(np.float32))
            us = timed(hip, lambda: kernels["matmul"].fn(x, w))
            nbytes = n * fmt.row_bytes(k)
            rows.append({"kernel": f"matvec {fmt_name} {name} {n}x{k}", "us": us, "GB/s": nbytes / us / 1e3})
            token_us += us * (16 if name != "output" else 1)
            token_bytes += nbytes * (16 if name != "output" else 1)
            if name == "ffn_gate":
                for m in (8, 32, 64):  # a decode batch: the weight is read once for all its rows
                    xb = hip.from_host(rng.standard_normal((m, k)).astype(np.float32))
                    us = timed(hip, lambda: kernels["matmul"].fn(xb, w))
                    rows.append({"kernel": f"matvec m={m} {fmt_name} {name} {n}x{k}", "us": us,
                                 "GB/s": nbytes / us / 1e3})
                xp = hip.from_host(rng.standard_normal((512, k)).astype(np.float32))
                us = timed(hip, lambda: kernels["matmul"].fn(xp, w))
                rows.append({"kernel": f"matmul m=512 {fmt_name} {n}x{k}", "us": us,
                             "TFLOP/s": 2 * 512 * n * k / us / 1e6})
            del w
        rows.append({"kernel": f"matvec {fmt_name} all weights of one token", "us": token_us,
                     "GB/s": token_bytes / token_us / 1e3})
    # attention: decode over 512 and 4096 cached positions, prefill of 512 (32 query heads, 8 kv heads, d 64)
    for ctx, m in ((512, 1), (4096, 1), (0, 512)):
        bs, hq, hkv, d = 16, 32, 8, 64
        total = ctx + m
        mb = (total + bs - 1) // bs
        kc = hip.from_host(rng.standard_normal((mb + 1, bs, hkv, d)).astype(np.float16))
        vc = hip.from_host(rng.standard_normal((mb + 1, bs, hkv, d)).astype(np.float16))
        tables = hip.from_host(np.arange(1, mb + 1, dtype=np.int32)[None])
        sid = hip.from_host(np.zeros(m, np.int32))
        pos = hip.from_host(np.arange(ctx, ctx + m, dtype=np.int32))
        q = hip.from_host(rng.standard_normal((m, hq, d)).astype(np.float32))
        k = hip.from_host(rng.standard_normal((m, hkv, d)).astype(np.float32))
        v = hip.from_host(rng.standard_normal((m, hkv, d)).astype(np.float32))
        us = timed(hip, lambda: kernels["attention"].fn(q, k, v, kc, vc, tables, sid, pos, scale=0.125))
        rows.append({"kernel": f"attention ctx={ctx} m={m}", "us": us})
    from rocmforge_core.ops import sample as spec
    for n_rows in (1, 32):
        logits = hip.from_host((rng.standard_normal((n_rows, 128256)) * 3).astype(np.float32))
        for label, params in (("top_k=40", {}), ("greedy", {"temperature": 0.0})):
            batch = [{**spec.DEFAULTS, "repeat_penalty": 1.1, **params, "seed": r, "history": list(range(64))}
                     for r in range(n_rows)]
            args = [hip.from_host(a) for a in spec.pack(batch, 64) + spec.pack_constraints(batch, 128256, 1)]
            bound = spec.candidates(batch, 128256)
            rows.append({"kernel": f"sample {label} {n_rows} rows vocab=128256",
                         "us": timed(hip, lambda: kernels["sample"].fn(logits, *args, candidates=bound))})
    x = hip.from_host(rng.standard_normal((1, 2048)).astype(np.float32))
    wn = hip.from_host(rng.standard_normal(2048).astype(np.float32))
    rows.append({"kernel": "rmsnorm 1x2048", "us": timed(hip, lambda: kernels["rmsnorm"].fn(x, wn, eps=1e-5))})
    q = hip.from_host(rng.standard_normal((1, 32, 64)).astype(np.float32))
    pos = hip.from_host(np.array([77], np.int32))
    rows.append({"kernel": "rope 1x32x64", "us": timed(hip, lambda: kernels["rope"].fn(q, pos, base=5e5, mode="normal"))})
    g = hip.from_host(rng.standard_normal((1, 8192)).astype(np.float32))
    rows.append({"kernel": "activation 1x8192", "us": timed(hip, lambda: kernels["activation"].fn(g, g, kind="swiglu"))})
    rows.append({"kernel": "add 1x2048", "us": timed(hip, lambda: kernels["add"].fn(x, x))})
    return rows + decode_breakdown(hip)


def decode_breakdown(hip) -> list[dict]:
    """Where a decode step of the synthetic llama-1b Q4_K_M goes, for batches of 1 to 64 sequences: the whole
    engine step (input writes, graph replay with sampling, reading the token ids) against the device time of the
    replay alone; and a 512-token prefill step."""
    import tempfile
    import time
    from pathlib import Path

    from rocmforge_core.cli.bench import write_synthetic
    from rocmforge_core.engine import Engine
    from rocmforge_core.engine.model import Model
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = Model(write_synthetic("llama-1b:Q4_K_M", Path(tmp)), backend="hip")
        engine = Engine(model, n_ctx=640, max_seqs=64)
        slots = [engine.add_sequence() for _ in range(64)]
        for m in (1, 8, 32, 64):
            batch = slots[:m]
            for pos in range(3):  # eager and captured, then replayed
                engine.step([1] * m, batch, [pos] * m, range(m), "decode").tokens
            start = time.perf_counter()
            for pos in range(3, 53):
                engine.step([1] * m, batch, [pos] * m, range(m), "decode").tokens
            step_us = (time.perf_counter() - start) * 1e6 / 50
            shape = next(s for s in engine._shapes.values() if s.key[:2] == ("decode", m))
            device_us = hip.runtime.elapsed_ms(lambda: [shape.runner() for _ in range(20)]) * 1e3 / 20
            rows.append({"kernel": f"decode step m={m} llama-1b Q4_K_M: engine.step", "us": step_us,
                         "tok/s": m / step_us * 1e6})
            rows.append({"kernel": f"decode step m={m} llama-1b Q4_K_M: device time", "us": device_us,
                         "tok/s": m / device_us * 1e6})
        for s in slots:
            engine.free_sequence(s)
        n = 512
        slot = engine.add_sequence()
        ids = list(range(1, n + 1))
        for _ in range(3):  # eager, captured on its second use, replayed
            engine.step(ids, [slot] * n, range(n), [n - 1], "prefill").tokens
        start = time.perf_counter()
        engine.step(ids, [slot] * n, range(n), [n - 1], "prefill").tokens
        rows.append({"kernel": f"prefill step {n} tokens llama-1b Q4_K_M: engine.step",
                     "us": (time.perf_counter() - start) * 1e6})
        shape = next(s for s in engine._shapes.values() if s.key[:2] == ("prefill", n))
        rows.append({"kernel": f"prefill step {n} tokens llama-1b Q4_K_M: device time",
                     "us": hip.runtime.elapsed_ms(lambda: [shape.runner() for _ in range(5)]) * 1e3 / 5})
        model.close()
    return rows


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "kernel_bench.json", *sys.argv[2:3])
