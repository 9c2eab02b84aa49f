"""`rocmforge bench`: prompt processing and generation speed with llama-bench's definitions.

ppN: one N-token prompt processed as one batch; tgN: N tokens decoded one at a time at batch 1. With -d D, both
run after the context is filled to D tokens (the fill untimed, once per depth: a run overwrites what the run
before it wrote after the depth), as llama-bench's -d; the context is sized for the deepest test. Token ids are
random, tokenization and sampling are excluded, each test runs twice to warm up and then -r times; figures are
the mean and standard deviation of tokens per second over the repetitions. --synthetic SHAPE:TYPE writes a
random-weight GGUF of a known model shape (llama-8b: Llama-3.1-8B, qwen2-7b, qwen3-8b, gemma3-4b, and -tiny
twins of each: rocmforge_core/cli/shapes.py) to a temporary file first. --write-synthetic SHAPE:TYPE --out FILE
only writes it; with --vocab-from VOCAB.gguf the file also gets that file's tokenizer (every tokenizer.* key,
e.g. llama.cpp's ggml-vocab-llama-bpe.gguf), so rocmforge and llama.cpp both load and serve it with the same
tokenizer."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rocmforge_core.cli.options import add_model_options, placement_profile, single_stream_kernels
from rocmforge_core.cli.shapes import MIXES, SHAPES, write_synthetic
from rocmforge_core.errors import RocmforgeError


class BenchError(RocmforgeError):
    """Bad bench arguments."""


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="prompt and generation speed (llama-bench's pp/tg)",
                       description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    add_model_options(p, model_group=src)
    src.add_argument("--synthetic", metavar="SHAPE:TYPE",
                     help=f"random weights of a model shape ({', '.join(SHAPES)}) in a quantization "
                          f"({', '.join(MIXES)}), e.g. llama-1b:Q4_0")
    src.add_argument("--write-synthetic", metavar="SHAPE:TYPE", help="write that file to --out and measure nothing")
    p.add_argument("--vocab-from", metavar="VOCAB.gguf",
                   help="copy this GGUF's tokenizer into the synthetic file (its token count sets the vocabulary size)")
    p.add_argument("--out", metavar="FILE.gguf", help="where --write-synthetic writes")
    p.add_argument("-p", "--n-prompt", type=int, default=512, help="prompt tokens of the pp test (0: skip)")
    p.add_argument("-n", "--n-gen", type=int, default=128, help="generated tokens of the tg test (0: skip)")
    p.add_argument("-r", "--repetitions", type=int, default=5)
    p.add_argument("-d", "--depth", default="0", metavar="D,...",
                   help="run every test after filling the context to each of these depths in tokens (llama-bench's "
                        "-d: the fill is not timed; default 0)")
    p.add_argument("-ctk", "--cache-type", choices=("f32", "f16"), default="f32",
                   help="element type of the KV cache (llama-bench's -ctk/-ctv, both; default f32)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args) -> int:
    single_stream_kernels()
    if args.repetitions < 1 or args.n_prompt < 0 or args.n_gen < 0:
        raise BenchError("-r must be at least 1 and -p/-n not negative")
    if (args.out is None) == bool(args.write_synthetic):
        raise BenchError("--out goes with --write-synthetic, which needs it")
    if args.vocab_from and args.model:
        raise BenchError("--vocab-from goes with --synthetic or --write-synthetic, not --model")
    depths = parse_depths(args.depth)
    n_ctx = max(depths) + max(args.n_prompt, args.n_gen, 16) + 1  # the deepest test and the next token
    if args.ctx_size is not None and args.ctx_size < n_ctx:
        raise BenchError(f"-c {args.ctx_size} cannot hold the tests' {n_ctx - 1} tokens (depth included) and the "
                         "next one")
    n_ctx = args.ctx_size or n_ctx
    vocab = Path(args.vocab_from) if args.vocab_from else None
    if args.write_synthetic:
        print(write_synthetic(args.write_synthetic, Path(args.out), vocab))
        return 0
    from rocmforge_core.engine import Engine
    from rocmforge_core.engine.backend_setup import configure_threads, pick_backend
    from rocmforge_core.engine.model import Model

    with tempfile.TemporaryDirectory(prefix="rocmforge-bench-") as tmp:
        if args.synthetic:
            path, label = write_synthetic(args.synthetic, Path(tmp), vocab), args.synthetic
        else:
            path, label = Path(args.model), Path(args.model).name
        profile = placement_profile(args)
        backend = pick_backend(args.backend, profile)
        configure_threads(args.threads)
        load_start = time.perf_counter()
        model = Model(path, backend=backend, profile=profile)
        load_s = time.perf_counter() - load_start
        try:
            engine = Engine(model, n_ctx=n_ctx, kv_dtype=args.cache_type)
            results = run_tests(engine, args, depths)
        finally:
            model.close()
    be = model.backend
    devices = be.devices()
    backend = model.planner.preferred
    # Kernels that failed or gave non-finite values at run time and were replaced (the hybrid planner's fallback):
    # then the figures are not the chosen backend's alone, and the report says so.
    fallbacks = model.plan.fallbacks
    report = {"model": label, "backend": backend, "device": devices[0].name if devices else platform.processor(),
              "load_s": load_s, "n_ctx": n_ctx, "cache_type": args.cache_type, "fallbacks": fallbacks,
              "results": results}
    if fallbacks:
        print(f"rocmforge: {fallbacks} kernel{'s' * (fallbacks != 1)} fell back to another backend during the run "
              "(warnings above): these figures are not the backend's alone", file=sys.stderr)
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        print()
    else:
        print("| model | backend | device | test | t/s |\n|---|---|---|---|---|")
        for r in results:
            print(f"| {label} | {backend} | {report['device']} | {display_name(r)} | "
                  f"{r['avg_ts']:.2f} ± {r['stddev_ts']:.2f} |")
    return 0


WARMUP_RUNS = 2
FILL_CHUNK = 512  # tokens per step when filling the context to a depth (llama-bench's default micro-batch)


def parse_depths(text: str) -> list[int]:
    parts = [d.strip() for d in text.split(",")]
    if not all(d.isdigit() for d in parts):
        raise BenchError(f"-d takes depths in tokens, comma-separated and not negative (e.g. 0,4096), got {text!r}")
    return [int(d) for d in parts]


def run_tests(engine, args, depths: list[int]) -> list[dict]:
    """Per depth, one sequence filled to that depth (untimed, as llama-bench's -d), then the pp and tg tests,
    each run from that depth; a run overwrites the positions after the depth that the run before wrote."""
    rng = np.random.default_rng(0)
    results = []
    for depth in depths:
        slot = engine.add_sequence()
        fill_s = fill(engine, slot, depth, rng)
        for test, n, fn in (("pp", args.n_prompt, prompt), ("tg", args.n_gen, generate)):
            if n:
                r = measure(engine, slot, depth, fn, n, args.repetitions, rng)
                results.append({"test": f"{test}{n}", "n_depth": depth, "depth_fill_s": fill_s, **r})
        engine.free_sequence(slot)
    return results


def fill(engine, slot: int, depth: int, rng) -> float:
    from rocmforge_core.engine.engine import prefill_pieces

    if not depth:
        return 0.0
    start = time.perf_counter()
    ids = [int(t) for t in rng.integers(0, engine.model.config.vocab_size, depth)]
    for a, b in prefill_pieces(depth, FILL_CHUNK):
        engine.step(ids[a:b], [slot] * (b - a), range(a, b), [b - a - 1], "prefill")
    engine.model.backend.synchronize()
    return time.perf_counter() - start


def prompt(engine, slot, depth, ids) -> None:
    n = len(ids)
    engine.step(ids, [slot] * n, range(depth, depth + n), [n - 1], "prefill")
    engine.model.backend.synchronize()


def generate(engine, slot, depth, ids) -> None:
    be = engine.model.backend
    for i, token in enumerate(ids):  # as llama-bench: one token per step, waiting for each
        engine.step([token], [slot], [depth + i], [0], "decode")
        be.synchronize()


def measure(engine, slot: int, depth: int, fn, n: int, reps: int, rng) -> dict:
    vocab = engine.model.config.vocab_size
    times = []
    # Warm-up runs, not counted (llama-bench has one): kernel builds and placement on the first run, and the
    # graph capture that the engine makes when a step shape comes back, on the second.
    for rep in range(reps + WARMUP_RUNS):
        ids = [int(t) for t in rng.integers(0, vocab, n)]
        start = time.perf_counter()
        fn(engine, slot, depth, ids)
        elapsed = time.perf_counter() - start
        if rep >= WARMUP_RUNS:
            times.append(elapsed)
    ts = np.array([n / t for t in times])
    return {"n_tokens": n, "reps": reps, "avg_ts": float(ts.mean()), "stddev_ts": float(ts.std()), "samples_s": times}


def display_name(result: dict) -> str:
    """llama-bench's name of a test: pp512, or tg128 @ d4096 at a depth."""
    return result["test"] + (f" @ d{result['n_depth']}" if result.get("n_depth") else "")


if __name__ == "__main__":  # python -m rocmforge_core.cli.bench ...: `rocmforge bench` without the other commands
    _parser = argparse.ArgumentParser(prog="rocmforge")
    add_parser(_parser.add_subparsers(dest="command", required=True))
    try:
        sys.exit(run(_parser.parse_args(["bench", *sys.argv[1:]])))
    except RocmforgeError as exc:
        print(f"rocmforge: error: {exc}", file=sys.stderr)
        sys.exit(1)
