"""`rocmforge bench`: prompt processing and generation speed with llama-bench's definitions.

ppN: one N-token prompt processed as one batch; tgN: N tokens decoded one at a time at batch 1, from an empty
context. Token ids are random, tokenization and sampling are excluded, each test runs once to warm up and then
-r times; figures are the mean and standard deviation of tokens per second over the repetitions. --synthetic
SHAPE:TYPE writes a random-weight GGUF of a known model shape (llama-1b: Llama-3.2-1B) to a temporary file first.
--write-synthetic SHAPE:TYPE --out FILE only writes it; with --vocab-from VOCAB.gguf the file also gets that
file's tokenizer (every tokenizer.* key, e.g. llama.cpp's ggml-vocab-llama-bpe.gguf), so rocmforge and
llama.cpp both load and serve it with the same tokenizer."""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rocmforge_core.cli.options import add_model_options, placement_profile
from rocmforge_core.errors import RocmforgeError


@dataclass(frozen=True)
class Shape:
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    vocab: int
    rope_base: float = 500000.0
    rms_eps: float = 1e-5
    context: int = 131072
    tied_output: bool = True  # no output.weight: the token embedding projects the logits


SHAPES = {"llama-1b": Shape(16, 2048, 32, 8, 8192, 128256),  # Llama-3.2-1B
          "llama-8b": Shape(32, 4096, 32, 8, 14336, 128256, tied_output=False),  # Llama-3.1-8B
          "llama-tiny": Shape(2, 256, 4, 2, 512, 1000, context=2048)}  # for tests of the command
# llama.cpp's mixes: TYPE -> (most matrices, attn_v/ffn_down on "more bits" layers, the output projection: the
# token embedding when tied, else output.weight, the embedding then taking the first type)
MIXES = {"Q4_0": ("Q4_0", "Q4_0", "Q4_0"), "Q4_K_M": ("Q4_K", "Q6_K", "Q6_K"), "Q4_K": ("Q4_K", "Q4_K", "Q4_K"),
         "Q8_0": ("Q8_0", "Q8_0", "Q8_0"), "Q6_K": ("Q6_K", "Q6_K", "Q6_K"), "F16": ("F16", "F16", "F16"),
         "Q5_K_M": ("Q5_K", "Q6_K", "Q6_K"), "Q4_1": ("Q4_1", "Q4_1", "Q4_1"), "Q5_0": ("Q5_0", "Q5_0", "Q5_0")}


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
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.repetitions < 1 or args.n_prompt < 0 or args.n_gen < 0:
        raise BenchError("-r must be at least 1 and -p/-n not negative")
    if (args.out is None) == bool(args.write_synthetic):
        raise BenchError("--out goes with --write-synthetic, which needs it")
    if args.vocab_from and args.model:
        raise BenchError("--vocab-from goes with --synthetic or --write-synthetic, not --model")
    n_ctx = max(args.n_prompt, args.n_gen, 16) + 1
    if args.ctx_size is not None and args.ctx_size < n_ctx:
        raise BenchError(f"-c {args.ctx_size} cannot hold the tests' {n_ctx - 1} tokens and the next one")
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
            engine = Engine(model, n_ctx=n_ctx)
            results = []
            if args.n_prompt:
                results.append(measure(engine, f"pp{args.n_prompt}", args.n_prompt,
                                       lambda e, slot, ids: prompt(e, slot, ids), args.repetitions))
            if args.n_gen:
                results.append(measure(engine, f"tg{args.n_gen}", args.n_gen,
                                       lambda e, slot, ids: generate(e, slot, ids), args.repetitions))
        finally:
            model.close()
    be = model.backend
    devices = be.devices()
    backend = model.planner.preferred
    report = {"model": label, "backend": backend, "device": devices[0].name if devices else platform.processor(),
              "load_s": load_s, "results": results}
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        print()
    else:
        print("| model | backend | device | test | t/s |\n|---|---|---|---|---|")
        for r in results:
            print(f"| {label} | {backend} | {report['device']} | {r['test']} | {r['avg_ts']:.2f} ± {r['stddev_ts']:.2f} |")
    return 0


WARMUP_RUNS = 2


def prompt(engine, slot, ids) -> None:
    n = len(ids)
    engine.step(ids, [slot] * n, range(n), [n - 1], "prefill")
    engine.model.backend.synchronize()


def generate(engine, slot, ids) -> None:
    be = engine.model.backend
    for pos, token in enumerate(ids):  # as llama-bench: one token per step, waiting for each
        engine.step([token], [slot], [pos], [0], "decode")
        be.synchronize()


def measure(engine, test: str, n: int, fn, reps: int) -> dict:
    rng = np.random.default_rng(0)
    vocab = engine.model.config.vocab_size
    times = []
    # Warm-up runs, not counted (llama-bench has one): kernel builds and placement on the first run, and the
    # graph capture that the engine makes when a step shape comes back, on the second.
    for rep in range(reps + WARMUP_RUNS):
        ids = [int(t) for t in rng.integers(0, vocab, n)]
        slot = engine.add_sequence()
        start = time.perf_counter()
        fn(engine, slot, ids)
        elapsed = time.perf_counter() - start
        engine.free_sequence(slot)
        if rep >= WARMUP_RUNS:
            times.append(elapsed)
    ts = np.array([n / t for t in times])
    return {"test": test, "n_tokens": n, "reps": reps, "avg_ts": float(ts.mean()), "stddev_ts": float(ts.std()),
            "samples_s": times}


def write_synthetic(spec: str, out: Path, vocab_from: Path | None = None) -> Path:
    """A random-weight GGUF of shape:type, e.g. llama-1b:Q4_0 (weights are valid random blocks of each format:
    the speed of a kernel does not depend on the values), written to ``out``: a path ending in .gguf, or a
    directory (the file is then SHAPE-TYPE.gguf there). With ``vocab_from``, that GGUF's tokenizer is copied in
    and its token count replaces the shape's vocabulary size."""
    import gguf

    from rocmforge_core.registry import get_registry
    shape_name, _, qtype = spec.partition(":")
    if shape_name not in SHAPES or qtype.upper() not in MIXES:
        raise BenchError(f"--synthetic takes SHAPE:TYPE with SHAPE in {', '.join(SHAPES)} and TYPE in "
                         f"{', '.join(MIXES)}, got {spec!r}")
    s = SHAPES[shape_name]
    tokenizer = read_tokenizer(vocab_from) if vocab_from else {}
    if tokenizer:
        s = dataclasses.replace(s, vocab=len(tokenizer["tokenizer.ggml.tokens"][0]))
    main, more_bits, output = MIXES[qtype.upper()]
    registry = get_registry()
    rng = np.random.default_rng(0)
    path = out if out.suffix == ".gguf" else out / f"{shape_name}-{qtype}.gguf"
    head_dim = s.d_model // s.n_heads
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(f"synthetic {spec}")
    w.add_block_count(s.n_layers)
    w.add_context_length(s.context)
    w.add_embedding_length(s.d_model)
    w.add_feed_forward_length(s.d_ff)
    w.add_head_count(s.n_heads)
    w.add_head_count_kv(s.n_kv_heads)
    w.add_rope_freq_base(s.rope_base)
    w.add_layer_norm_rms_eps(s.rms_eps)
    w.add_vocab_size(s.vocab)
    w.add_rope_dimension_count(head_dim)
    for key, (value, vtype, sub_type) in tokenizer.items():
        w.add_key_value(key, value, vtype, sub_type)

    def matrix(name: str, rows: int, cols: int, fmt_name: str) -> None:
        fmt = registry.format(fmt_name)
        if fmt_name in ("F16", "BF16", "F32"):
            values = (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)
            raw = fmt.quantize(values) if fmt.quantize else values.view(np.uint8)
        else:
            raw = fmt.random_weight(rng, name, (rows, cols)).data
        w.add_tensor(name, np.ascontiguousarray(raw), raw_shape=(rows, raw.shape[-1]),
                     raw_dtype=gguf.GGMLQuantizationType(fmt.ggml_type))

    def norm(name: str) -> None:
        w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(s.d_model)).astype(np.float32))

    def more(i: int) -> bool:  # llama.cpp's use_more_bits
        n = s.n_layers
        return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2

    kv = s.n_kv_heads * head_dim
    matrix("token_embd.weight", s.vocab, s.d_model, output if s.tied_output else main)
    norm("output_norm.weight")
    if not s.tied_output:
        matrix("output.weight", s.vocab, s.d_model, output)
    for i in range(s.n_layers):
        b = f"blk.{i}"
        norm(f"{b}.attn_norm.weight")
        norm(f"{b}.ffn_norm.weight")
        matrix(f"{b}.attn_q.weight", s.d_model, s.d_model, main)
        matrix(f"{b}.attn_k.weight", kv, s.d_model, main)
        matrix(f"{b}.attn_v.weight", kv, s.d_model, more_bits if more(i) else main)
        matrix(f"{b}.attn_output.weight", s.d_model, s.d_model, main)
        matrix(f"{b}.ffn_gate.weight", s.d_ff, s.d_model, main)
        matrix(f"{b}.ffn_up.weight", s.d_ff, s.d_model, main)
        matrix(f"{b}.ffn_down.weight", s.d_model, s.d_ff, more_bits if more(i) else main)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def read_tokenizer(path: Path) -> dict[str, tuple]:
    """Every tokenizer.* key of a GGUF: key -> (value, value type, element type), as GGUFWriter.add_key_value
    takes them (token strings as their exact bytes, numeric arrays as lists)."""
    import gguf

    from rocmforge_core.gguf import StringArray, open_gguf
    from rocmforge_core.gguf.reader import SCALAR_TYPES
    element_types = {dtype: gguf.GGUFValueType(t) for t, dtype in SCALAR_TYPES.items()}
    out = {}
    with open_gguf(path) as f:
        if not isinstance(f.metadata.get("tokenizer.ggml.tokens"), StringArray):
            raise BenchError(f"{path.name}: no tokenizer.ggml.tokens array, so it holds no vocabulary to copy")
        for key, value in f.metadata.items():
            if not key.startswith("tokenizer."):
                continue
            vtype = gguf.GGUFValueType(f.value_types[key])
            if isinstance(value, StringArray):
                out[key] = value.tobytes_list(), vtype, gguf.GGUFValueType.STRING
            elif isinstance(value, np.ndarray):
                out[key] = value.tolist(), vtype, element_types[value.dtype]
            elif isinstance(value, list):
                raise BenchError(f"{path.name}: {key} is an array of arrays, which no tokenizer key is")
            else:
                out[key] = value, vtype, None
    return out


if __name__ == "__main__":  # python -m rocmforge_core.cli.bench ...: `rocmforge bench` without the other commands
    _parser = argparse.ArgumentParser(prog="rocmforge")
    add_parser(_parser.add_subparsers(dest="command", required=True))
    try:
        sys.exit(run(_parser.parse_args(["bench", *sys.argv[1:]])))
    except RocmforgeError as exc:
        print(f"rocmforge: error: {exc}", file=sys.stderr)
        sys.exit(1)
