"""Measure the cpu backend on a real model: memory bandwidth, the bandwidth bound of decode, the kernels of one
decode step and of a 512-token prefill over the model's own weights, JIT warm-up, and (when the engine can run
the model) llama-bench's pp512 / tg128 end to end.

    python -m rocmforge_cpu_simd.bench MODEL.gguf [--threads N] [--json]

Timings are the best of several repeats (the least disturbed by other processes); the load average is printed
with them because on a shared machine it dominates the spread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def best_of(fn, repeats: int) -> float:
    return timed(fn, repeats)[0]


def timed(fn, repeats: int) -> tuple[float, float]:
    """Best wall time and best process CPU time (all threads) of ``fn`` over ``repeats`` runs after a warm-up.
    With one thread on a busy machine the CPU time is what an idle machine shows as wall time."""
    fn()
    wall = cpu = float("inf")
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
    return wall, cpu


def bandwidth() -> dict:
    """GB/s of a numpy copy (read + write) and of a parallel numba read of 256 MiB."""
    from rocmforge_cpu_simd.jit import fast
    from numba import prange

    @fast(parallel=True)
    def read(a, out):
        for r in prange(a.shape[0]):
            acc = np.float32(0.0)
            for j in range(a.shape[1]):
                acc += a[r, j]
            out[r] = acc

    a = np.ones((32768, 2048), dtype=np.float32)
    b = np.empty_like(a)
    sums = np.empty(a.shape[0], dtype=np.float32)
    copy = best_of(lambda: np.copyto(b, a), 5)
    scan = best_of(lambda: read(a, sums), 5)
    return {"numpy_copy_GBps": 2 * a.nbytes / copy / 1e9, "numba_read_GBps": a.nbytes / scan / 1e9}


def model_weights(path: str):
    """(name, host weight, cpu weight) of every 2-D tensor a decode step multiplies by."""
    from rocmforge_core.gguf import open_gguf
    from rocmforge_core.registry import get_registry
    registry = get_registry()
    cpu = registry.backend("cpu")
    g = open_gguf(path)
    out = []
    for name, info in g.tensors.items():
        w = g.weight(name)
        if len(w.shape) != 2 or name.startswith("token_embd") and g.config.tied_output is False:
            continue
        out.append((name, w, cpu.upload_weight(w)))
    return g, out


def kernel_step(weights, registry, m: int, repeats: int) -> tuple[float, float]:
    """Seconds for one pass of matmuls over every layer weight (and, for m == 1, the output projection),
    in file order, so each weight comes from memory as in a real step."""
    from rocmforge_core import ops
    calls = []
    for name, w, packed in weights:
        is_output = name.startswith(("token_embd", "output."))
        if is_output and m > 1:
            continue  # prefill projects only the last position (llama-bench's pp)
        x = np.random.default_rng(0).standard_normal((m, w.shape[1])).astype(np.float32)
        kernel = registry.kernels_for(ops.signature("matmul", (x, packed), {}), backend="cpu")[0].kernel
        calls.append((kernel.fn, x, packed))
    return timed(lambda: [fn(x, p) for fn, x, p in calls], repeats)


def jit_warmup() -> dict:
    """Seconds to import the backend and run every kernel once: with an empty numba cache (compiling) and again
    with the cache that run left (loading)."""
    code = ("import time; t=time.perf_counter(); "
            "from rocmforge_core.conformance import run_conformance; "
            "r=run_conformance(backend='cpu'); assert not [x for x in r if x.status=='fail']; "
            "print(time.perf_counter()-t)")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        times = [float(subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                                      text=True).stdout.split()[-1]) for _ in range(2)]
    return {"cold_s": times[0], "cached_s": times[1]}


def end_to_end(path: str, n_prompt: int = 512, n_gen: int = 128) -> dict:
    from rocmforge_core.engine import Engine, Model, SamplingParams
    model = Model(path, backend="cpu")
    engine = Engine(model)
    ids = [int(i) for i in np.random.default_rng(0).integers(100, 2000, n_prompt)]
    greedy = SamplingParams(temperature=0.0)
    engine.generate(ids[:16], max_tokens=4, sampling=greedy)  # compile/load every kernel first
    pp = min(_stats(engine, ids, 1, greedy).prefill_s for _ in range(2))
    cpu = time.process_time()
    gen = _stats(engine, ids[:16], n_gen, greedy)
    cpu = time.process_time() - cpu
    return {"pp512_tps": n_prompt / pp, "tg128_tps": gen.decode_tokens_per_s, "generated": gen.generated_tokens,
            "tg128_cpu_s_per_token": cpu / gen.generated_tokens}


def _stats(engine, ids, n, sampling):
    # ignore_eos keeps tg at n tokens where the engine offers it
    try:
        return engine.generate(ids, max_tokens=n, sampling=sampling, ignore_eos=True).stats
    except TypeError:
        return engine.generate(ids, max_tokens=n, sampling=sampling).stats


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m rocmforge_cpu_simd.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-e2e", action="store_true", help="skip the engine run")
    p.add_argument("--no-jit", action="store_true", help="skip the JIT warm-up measurement")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from rocmforge_core.registry import get_registry
    registry = get_registry()
    cpu = registry.backend("cpu")
    threads = cpu.configure(args.threads)
    report = {"model": os.path.basename(args.model), "threads": threads,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu.devices()[0].name,
              "loadavg_before": os.getloadavg()[0]}
    report.update(bandwidth())
    g, weights = model_weights(args.model)
    decode_bytes = sum(pk.data.nbytes if hasattr(pk.data, "nbytes") else np.asarray(pk.data).nbytes
                       for _, _, pk in weights)
    gguf_bytes = sum(g.tensors[n].nbytes for n, _, _ in weights)
    report["weights_MB_per_token_gguf"] = gguf_bytes / 1e6
    report["weights_MB_per_token_cpu_layout"] = decode_bytes / 1e6
    report["tg_bound_tps"] = report["numba_read_GBps"] * 1e9 / decode_bytes
    step, step_cpu = kernel_step(weights, registry, 1, args.repeats)
    report["decode_matmuls_ms"] = step * 1e3
    report["decode_matmuls_cpu_ms"] = step_cpu * 1e3
    report["decode_matmuls_GBps"] = decode_bytes / step / 1e9
    prefill, prefill_cpu = kernel_step(weights, registry, 512, max(1, args.repeats // 2))
    report["prefill512_matmuls_s"] = prefill
    report["prefill512_matmuls_cpu_s"] = prefill_cpu
    report["prefill512_matmuls_tps"] = 512 / prefill
    if not args.no_jit:
        report["jit"] = jit_warmup()
    if not args.no_e2e:
        try:
            report["e2e"] = end_to_end(args.model)
        except Exception as exc:  # the engine may not run this model yet: report the kernels anyway
            report["e2e"] = f"{type(exc).__name__}: {exc}"
    report["loadavg_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for key, value in report.items():
            print(f"{key:32s} {value:.4g}" if isinstance(value, float) else f"{key:32s} {value}")


if __name__ == "__main__":
    main()
