"""`rocmforge warmup`: compile this machine's kernels now, so that no later run waits for them.

Backends that compile on first use (cpu: numba, per argument types) cache what they compiled on disk. This runs
every kernel of the backend once (the conformance kit's cases: each op and each installed format), then a few
tokens of each model (default: the default model; -m repeatable) through the paths a run takes (a long prompt
that prefills through batched products, a short one, greedy and sampled decoding), then has the backend compile
what it would still compile later (cpu: the parallel twin of every serial build and back). `make install` runs
it for the default model, `make models` for the test models."""

from __future__ import annotations

import sys
import time

import numpy as np

from rocmforge_core.cli.options import add_model_options, placement_profile
from rocmforge_core.default_model import default_model_path
from rocmforge_core.engine import Engine, Model, SamplingParams
from rocmforge_core.engine.backend_setup import configure_threads, pick_backend
from rocmforge_core.engine.sampling import GREEDY
from rocmforge_core.registry import get_registry

LONG_PROMPT = 40   # tokens: from 32 on, the cpu backend's products go through dequantized tiles and BLAS
SHORT_PROMPT = 5


def add_parser(sub) -> None:
    p = sub.add_parser("warmup", help="compile the kernels ahead of the first run (cached on disk)",
                       description=__doc__.split("\n\n")[1])
    add_model_options(p, context=False, repeat_model=True)
    p.set_defaults(func=run)


def run(args) -> int:
    start = time.perf_counter()
    configure_threads(args.threads)
    profile = placement_profile(args)
    models = args.model or [default_model_path()]
    backend = pick_backend(args.backend, profile)
    registry = get_registry()
    names = [backend] if backend else [b for b in registry.backends if registry.backends[b].available()]
    compiled0 = compile_seconds(registry, names)
    from rocmforge_core.conformance import run_conformance
    results = run_conformance(registry, backend=names)
    failed = [r for r in results if r.status == "fail"]
    if failed:
        print(f"rocmforge: warning: {len(failed)} of {len(results)} kernel checks failed on {', '.join(names)}: "
              f"`rocmforge plugins --check {','.join(names)}` shows them", file=sys.stderr)
    for path in models:
        model = Model(path, backend=backend, profile=profile)
        try:
            engine = Engine(model, n_ctx=LONG_PROMPT + 8)
            ids = [int(t) for t in np.random.default_rng(0).integers(0, model.config.vocab_size, LONG_PROMPT)]
            engine.generate(ids, max_tokens=3, sampling=GREEDY)
            engine.generate(ids[:SHORT_PROMPT], max_tokens=3, sampling=SamplingParams(seed=0))
        finally:
            model.close()
    builds = sum(registry.backends[n].compile_ahead() for n in names)
    compiled = compile_seconds(registry, names) - compiled0
    print(f"rocmforge: warmup of {', '.join(names)} for {len(models)} model(s) done in "
          f"{time.perf_counter() - start:.1f} s, {compiled:.1f} s of it compiling ({builds} builds ahead)",
          file=sys.stderr)
    return 0


def compile_seconds(registry, names) -> float:
    return sum(registry.backends[n].compile_seconds() for n in names)
