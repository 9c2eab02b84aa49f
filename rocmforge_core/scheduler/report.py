"""The explanation of a plan (``rocmforge explain``): per call site, grouped across layers when identical, the
candidates with their verdicts, what decided (rule file:line, op choice, offload, default), the cost, the chosen
kernel and the copies; then per step the ops and weight bytes per backend and the copies per token."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

from rocmforge_core.scheduler.placement import READBACK, StepPlan
from rocmforge_core.program import STEP_INPUTS

_LAYER = re.compile(r"^blk\.(\d+)\.")


def build(steps: dict[str, StepPlan], *, model: str, backend: str | None, profile: str | None,
          notes: list[str], tuning: dict, fallbacks: list[dict] | None = None) -> dict:
    out = {"model": model, "backend": backend, "profile": profile, "notes": notes, "tuning": tuning, "steps": {}}
    for phase, step in steps.items():
        out["steps"][phase] = {"sites": _groups(step), "summary": _summary(step)}
    out["fallbacks"] = fallbacks or []
    return out


def _tensor(step: StepPlan, source_site: int) -> str:
    if source_site in STEP_INPUTS:
        return STEP_INPUTS[source_site]
    if source_site == READBACK:
        return "step result"
    return step.sites[source_site].site.name


def _site(plan, step: StepPlan) -> dict:
    return {
        "op": plan.site.op,
        "signature": str(plan.site.sig),
        "candidates": [{"kernel": c.kernel.name, "backend": c.kernel.backend, "ok": c.verdict.ok,
                        "reason": c.verdict.reason} for c in plan.candidates],
        "decided_by": {"kind": plan.origin.kind, "where": plan.origin.where,
                       "backends": list(plan.origin.backends), "why": plan.origin.why},
        "kernel": plan.kernel.name,
        "backend": plan.backend,
        "cost": {"seconds": plan.cost.seconds, "measured": plan.cost.measured},
        "copies": [{"tensor": _tensor(step, c.source_site), "from": c.source, "to": c.dest, "bytes": c.nbytes,
                    "seconds": c.cost.seconds} for c in plan.copies],
        "notes": list(plan.notes),
    }


def _groups(step: StepPlan) -> list[dict]:
    """Sites that differ only by their layer number collapse into one entry "blk.[0-29].ffn_down"."""
    groups: dict[tuple, dict] = {}
    order = []
    for plan in step.sites:
        entry = _site(plan, step)
        found = _LAYER.match(plan.site.name)
        layer = int(found.group(1)) if found else None
        pattern = _LAYER.sub("blk.{}.", plan.site.name) if found else plan.site.name
        key = (pattern, repr(sorted((k, repr(v)) for k, v in entry.items() if k != "copies")),
               repr([(_LAYER.sub("blk.{}.", c["tensor"]), c["from"], c["to"], c["bytes"]) for c in entry["copies"]]))
        if key not in groups:
            groups[key] = {"name": pattern, "layers": [], **entry}
            order.append(key)
        if layer is not None:
            groups[key]["layers"].append(layer)
    result = []
    for key in order:
        g = groups[key]
        if g["layers"]:
            g["name"] = g["name"].replace("{}", f"[{_ranges(g['layers'])}]" if len(g["layers"]) > 1
                                          else str(g["layers"][0]))
        result.append(g)
    return result


def _ranges(numbers: list[int]) -> str:
    parts, start = [], None
    numbers = sorted(numbers)
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            parts.append(f"{start}-{n}" if n != start else f"{n}")
            start = None
    return ",".join(parts)


def _summary(step: StepPlan) -> dict:
    ops = Counter(p.backend for p in step.sites)
    weights: dict[str, dict[str, int]] = defaultdict(dict)
    for p in step.sites:
        if p.site.weight:
            weights[p.backend][p.site.weight] = p.site.weight_bytes
    seconds = defaultdict(float)
    for p in step.sites:
        seconds[p.backend] += p.cost.seconds
    copies = [c for p in step.sites for c in p.copies]  # what the engine counts; the read-back is separate
    pairs = Counter(f"{c.source}->{c.dest}" for c in copies)
    return {
        "backends": {b: {"ops": ops[b], "weight_bytes": sum(weights[b].values()), "seconds": seconds[b]}
                     for b in sorted(ops)},
        "copies_per_step": len(copies),
        "copy_bytes_per_step": sum(c.nbytes for c in copies),
        "copy_seconds_per_step": sum(c.cost.seconds for c in copies),
        "copies_by_direction": dict(sorted(pairs.items())),
        "readback": ({"from": step.readback.source, "bytes": step.readback.nbytes,
                      "seconds": step.readback.cost.seconds} if step.readback else None),
        "split": step.split.describe() if step.split else None,
        "all_measured": all(p.cost.measured for p in step.sites),
    }


def render(report: dict) -> str:
    lines = [f"model: {report['model']}",
             f"backend: {report['backend'] or '(profile default)'}   profile: {report['profile'] or '(none)'}",
             f"costs: {report['tuning']['status']}"]
    lines += [f"note: {n}" for n in report["notes"]]
    for phase, step in report["steps"].items():
        lines += ["", f"== {phase} step =="]
        for g in step["sites"]:
            lines += _render_group(g)
        lines += ["", f"-- {phase} summary --"] + _render_summary(phase, step["summary"])
    if report["fallbacks"]:
        lines += ["", "== run-time fallbacks =="]
        lines += [f"{f['site']} ({f['phase']}): {f['kernel']} {f['problem']}; now {f['replacement']}"
                  for f in report["fallbacks"]]
    return "\n".join(lines) + "\n"


def _render_group(g: dict) -> list[str]:
    count = f"  x{len(g['layers'])}" if len(g["layers"]) > 1 else ""
    d = g["decided_by"]
    where = f" ({d['where']})" if d["where"] else ""
    why = f": {d['why']}" if d["why"] else ""
    cost = g["cost"]
    out = [f"{g['name']}{count}  {g['signature']}",
           f"    decided by {d['kind']}{where} -> {', '.join(d['backends'])}{why}",
           f"    chosen {g['kernel']} on {g['backend']}, {_time(cost['seconds'])} "
           f"{'measured' if cost['measured'] else 'estimated'}"]
    out += _render_candidates(g["candidates"])
    for c in g["copies"]:
        out.append(f"    copy in: {c['tensor']} ({_bytes(c['bytes'])}) {c['from']} -> {c['to']} ({_time(c['seconds'])})")
    out += [f"    note: {n}" for n in g["notes"]]
    return out


def _render_candidates(candidates: list[dict], shown: int = 3) -> list[str]:
    """Every capable kernel; refusals in full only for backends with no capable kernel (they explain a
    fallback), counted otherwise (a backend registers one kernel per format; --json lists them all)."""
    out = [f"      + {c['kernel']:<28} {c['reason']}" for c in candidates if c["ok"]]
    capable = {c["backend"] for c in candidates if c["ok"]}
    refused: dict[str, list[dict]] = defaultdict(list)
    for c in candidates:
        if not c["ok"]:
            refused[c["backend"]].append(c)
    for backend, cands in refused.items():
        if backend in capable:
            out.append(f"      - {len(cands)} other {backend} kernel{'s' * (len(cands) > 1)} refuse this call")
            continue
        out += [f"      - {c['kernel']:<28} {c['reason']}" for c in cands[:shown]]
        if len(cands) > shown:
            out.append(f"      - ... and {len(cands) - shown} more {backend} kernels refuse this call")
    return out


def _render_summary(phase: str, s: dict) -> list[str]:
    per = "per token" if phase == "decode" else "per prefill step"
    out = [f"  {b:<10} {v['ops']:>4} ops  weights {_bytes(v['weight_bytes']):>10}  {_time(v['seconds'])}"
           for b, v in s["backends"].items()]
    direction = ", ".join(f"{k} {n}" for k, n in s["copies_by_direction"].items()) or "none"
    out.append(f"  copies {per}: {s['copies_per_step']} ({_bytes(s['copy_bytes_per_step'])}, "
               f"{_time(s['copy_seconds_per_step'])}): {direction}")
    if s["readback"]:
        r = s["readback"]
        out.append(f"  result read back from {r['from']}: {_bytes(r['bytes'])} ({_time(r['seconds'])})")
    if s["split"]:
        out.append(f"  offload: {s['split']}")
    return out


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _time(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.1f} us"
