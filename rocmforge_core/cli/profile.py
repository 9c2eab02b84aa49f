"""`rocmforge profile`: check a YAML profile, print its JSON Schema or the generated reference.

`check FILE [--model FILE]` prints each problem as FILE:LINE: error|warning: message and exits 1 when there is an
error (unknown op, backend, format or key; a bad regex; ...). With --model it also warns about rules that match no
call site of that model, rules whose every match an earlier rule takes, and offload beyond the model's layers.
"""

from __future__ import annotations

import json

from rocmforge_core.registry import get_registry
from rocmforge_core.scheduler import reference_doc
from rocmforge_core.scheduler.profile import Problem, check_against_sites, parse_profile, read_profile, schema


def add_parser(sub) -> None:
    p = sub.add_parser("profile", help="check a YAML profile; print the profile schema or reference",
                       description=__doc__.split("\n\n")[1])
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="validate a profile (and match it against a model)")
    check.add_argument("file", metavar="FILE")
    check.add_argument("--model", metavar="FILE", help="GGUF model whose call sites the rules should match")
    check.set_defaults(func=run_check)
    actions.add_parser("schema", help="print the profile JSON Schema").set_defaults(
        func=lambda args: print(json.dumps(schema(), indent=2)))
    actions.add_parser("reference", help="print the profile reference (docs/PROFILE-REFERENCE.md)").set_defaults(
        func=lambda args: print(reference_doc.render(), end=""))


def run_check(args) -> int:
    registry = get_registry()
    profile, problems = parse_profile(read_profile(args.file), args.file, registry)
    if profile is not None and args.model:
        from rocmforge_core.engine.model import trace_file
        model = trace_file(args.model, registry)
        sites = [s for step in model.steps.values() for s in step]
        problems += check_against_sites(profile, sites, model.path.name)
        if profile.gpu_layers is not None and profile.gpu_layers > model.config.n_layers:
            problems.append(_offload_warning(profile, model))
    for problem in sorted(problems, key=lambda p: (p.line, p.severity)):
        print(problem)
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    if errors:
        print(f"{args.file}: {errors} error(s), {warnings} warning(s)")
        return 1
    rules = len(profile.rules)
    print(f"{args.file}: valid ({rules} rule{'s' * (rules != 1)}, {warnings} warning{'s' * (warnings != 1)})")
    return 0


def _offload_warning(profile, model):
    line = int(profile.offload_where.rsplit(":", 1)[1])
    return Problem("warning", profile.path, line, f"gpu_layers {profile.gpu_layers} exceeds the "
                   f"{model.config.n_layers} layers of {model.path.name}: every layer is offloaded")
