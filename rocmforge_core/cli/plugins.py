"""`rocmforge plugins`: what is installed, what loaded, what runs where.

The table lists plugins (with load errors), backends (with why one is unavailable), formats, architectures and a
support matrix op x backend. ``--json`` gives the same data for scripts, the matrix per format; ``--check`` runs
the conformance kit on the named plugins or backends (all when none are named).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import numpy as np

from rocmforge_core import ops
from rocmforge_core.ops import Verdict, no
from rocmforge_core.registry import describe_error, get_registry, registry_in_use

ARRAY = "f32"  # matrix key of calls whose arguments are all plain f32 arrays (GGUF type names are upper-case)
PROBE_ROWS, PROBE_COLS = 64, 512  # a probe weight's shape: whole blocks of every GGUF type, row groups of repackers
NO_BACKEND = ("No backend plugin is installed: only the slow numpy `reference` backend can run models. "
              "Install one: `pip install 'rocmforge[cpu]'` (CPU) or `pip install 'rocmforge[hip]'` "
              "(GPUs through HIP); from a checkout, `make install` installs every plugin.")


def add_parser(sub) -> None:
    p = sub.add_parser("plugins", help="list installed plugins, backends, formats and what each backend supports",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--check", nargs="?", const="", default=None, metavar="NAMES",
                   help="run the conformance kit on the comma-separated plugins/backends NAMES (all when omitted)")
    p.add_argument("--seed", type=int, default=0, help="seed of the conformance cases (with --check)")
    p.set_defaults(func=run)


def run(args) -> int:
    registry = get_registry()
    if args.check is not None:
        return _check(registry, args.check, args.seed)
    report = collect(registry)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
    return 0


# -- gathering --------------------------------------------------------------------------------------------------
def collect(registry) -> dict:
    report = {
        "plugins": [{"name": p.name, "distribution": p.distribution, "version": p.version, "module": p.module,
                     "ok": p.ok, "error": p.error, "provides": p.provides}
                    for p in sorted(registry.plugins.values(), key=lambda p: p.name)],
        "backends": {name: _backend(b) for name, b in sorted(registry.backends.items())},
        "formats": {f.name: {"ggml_type": f.ggml_type, "block_size": f.block_size, "type_size": f.type_size,
                             "plugin": f.plugin, "quantize": f.quantize is not None,
                             "kernel_sources": {k: str(v) for k, v in sorted(f.kernel_sources.items())},
                             "repackers": sorted(f.repackers)}
                    for f in sorted(registry.formats.values(), key=lambda f: f.ggml_type)},
        "architectures": {name: {"plugin": a.plugin} for name, a in sorted(registry.architectures.items())},
        "kernels": [{"name": k.name, "op": k.op, "backend": k.backend, "plugin": k.plugin, "priority": k.priority}
                    for k in sorted(registry.kernels, key=lambda k: (k.op, k.backend, -k.priority, k.name))],
        "matrix": matrix(registry),
    }
    if all(b.oracle for b in registry.backends.values()):
        report["notice"] = NO_BACKEND
    return report


def _backend(backend) -> dict:
    verdict = _guarded(backend.available)
    entry = {"plugin": backend.plugin, "host": backend.is_host, "available": verdict.ok, "reason": verdict.reason,
             "devices": []}
    if verdict.ok:
        try:
            entry["devices"] = [asdict(d) for d in backend.devices()]
        except Exception as exc:
            entry["available"], entry["reason"] = False, f"listing devices failed: {describe_error(exc)}"
    return entry


def _guarded(query) -> Verdict:
    try:
        verdict = query()
    except Exception as exc:  # a broken backend is reported, not fatal
        return no(f"availability check raised {describe_error(exc)}")
    return verdict if isinstance(verdict, Verdict) else no(f"available() returned {verdict!r}, not a Verdict")


def matrix(registry) -> dict:
    """{op: {backend: {format or 'f32': {"ok", "reason", "kernel", "layout"}}}}, from each kernel's own capability
    answer on a representative decode-step call (weights 4096 x 4096 for weight-taking ops), with weights in the
    layout that backend's upload gives them, as the planner asks."""
    keys = [ARRAY] + sorted(registry.formats, key=lambda n: registry.formats[n].ggml_type)
    backends = sorted({k.backend for k in registry.kernels} | set(registry.backends))
    with registry_in_use(registry):  # uploads find formats through the process-wide registry
        layouts = {(b, f): weight_layout(registry, b, f) for b in backends for f in registry.formats}
    table: dict = {}
    for op in ops.OP_NAMES:
        table[op] = {}
        for backend in backends:
            row = {}
            for key in (keys if ops.spec(op).weights else [ARRAY]):
                layout, note = layouts.get((backend, key), ("", ""))
                sig = ops.spec(op).representative(key, layout)
                if sig is None:
                    continue
                candidates = registry.kernels_for(sig, backend)
                if candidates and candidates[0].verdict.ok:
                    cell = {"ok": True, "reason": candidates[0].verdict.reason, "kernel": candidates[0].kernel.name}
                else:
                    reasons = "; ".join(f"{c.kernel.name}: {c.verdict.reason}" for c in candidates)
                    cell = {"ok": False, "reason": reasons or f"no {op} kernel for backend {backend}", "kernel": ""}
                cell["reason"] += note
                row[key] = {**cell, "layout": layout}
            table[op][backend] = row
    return table


def weight_layout(registry, backend_name: str, fmt_name: str) -> tuple[str, str]:
    """(layout, note): the layout a weight of this format gets on this backend, from uploading a small probe
    weight there, or from the format's repacker alone when the backend cannot run here."""
    fmt, backend = registry.formats[fmt_name], registry.backends.get(backend_name)
    if PROBE_COLS % fmt.block_size:
        return "", ""
    try:
        probe = fmt.random_weight(np.random.default_rng(0), "probe", (PROBE_ROWS, PROBE_COLS))
        if backend is not None and _guarded(backend.available).ok:
            return backend.upload_weight(probe).layout, ""
        repack = fmt.repackers.get(backend_name)
        return (repack(probe).layout if repack else ""), ""
    except Exception as exc:  # reported in the matrix; the capability query then sees GGUF's own layout
        return "", f" (uploading a probe {fmt_name} weight to {backend_name} failed: {describe_error(exc)})"


# -- the table --------------------------------------------------------------------------------------------------
def render(report: dict) -> str:
    out = ["Plugins"]
    out += _table(["NAME", "DISTRIBUTION", "VERSION", "STATUS"],
                  [[p["name"], p["distribution"], p["version"],
                    f"error: {p['error']}" if p["error"] else "ok" + _provides(p["provides"])]
                   for p in report["plugins"]])
    out += ["", "Backends"]
    out += _table(["NAME", "PLUGIN", "AVAILABLE", "DEVICES / REASON"],
                  [[n, b["plugin"], "yes" if b["available"] else "no",
                    ", ".join(f"{d['name']} ({d['arch']})" for d in b["devices"]) if b["available"] else b["reason"]]
                   for n, b in report["backends"].items()])
    if "notice" in report:
        out += ["", report["notice"]]
    out += ["", "Formats"]
    if report["formats"]:
        out += _table(["NAME", "GGML TYPE", "BLOCK", "BYTES", "PLUGIN", "QUANTIZE", "KERNEL SOURCES"],
                      [[n, f["ggml_type"], f["block_size"], f["type_size"], f["plugin"],
                        "yes" if f["quantize"] else "no", ", ".join(f["kernel_sources"]) or "-"]
                       for n, f in report["formats"].items()])
    else:
        out += ["  none installed (each GGUF tensor type is a plugin: rocmforge-format-<type>)"]
    out += ["", "Architectures"]
    out += [f"  {n} ({a['plugin']})" for n, a in report["architectures"].items()] or ["  none installed"]
    out += ["", "Support (op x backend: formats of weight-taking ops; '-' = no capable kernel)"]
    backends = sorted({b for row in report["matrix"].values() for b in row})
    out += _table(["OP"] + backends,
                  [[op] + [_cell(report["matrix"][op][b], op) for b in backends] for op in report["matrix"]])
    return "\n".join(out)


def _provides(provides: dict) -> str:
    parts = [f"{len(v)} {k if len(v) != 1 else k[:-1]}" for k, v in provides.items() if v]
    return f" ({', '.join(parts)})" if parts else ""


def _cell(row: dict, op: str) -> str:
    ok = [k for k, v in row.items() if v["ok"]]
    if not ops.spec(op).weights:
        return "yes" if ok else "-"
    formats = [k for k in ok if k != ARRAY]
    if not ok:
        return "-"
    if formats and len(formats) == len(row) - (ARRAY in row):
        return f"all {len(formats)}" + (" + f32" if ARRAY in ok else "")
    return " ".join(ok)


def _table(header: list[str], rows: list[list]) -> list[str]:
    if not rows:
        return ["  none"]
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + rows]


# -- --check ----------------------------------------------------------------------------------------------------
def _check(registry, names: str, seed: int) -> int:
    from rocmforge_core.conformance import FAIL, SKIP, run_conformance
    selected = [n.strip() for n in names.split(",") if n.strip()]
    results = run_conformance(registry, plugin=selected or None, seed=seed)
    for r in results:
        if r.status == FAIL:
            print(f"FAIL  {r.name}: {r.message}")
    skipped_by_kernel: dict[str, list[str]] = {}
    for r in results:
        if r.status == SKIP:
            skipped_by_kernel.setdefault(r.name.split("[")[0], []).append(r.message)
    for kernel, reasons in skipped_by_kernel.items():  # one line per kernel: a format kernel skips most cases
        print(f"SKIP  {kernel}: {len(reasons)} case{'s' if len(reasons) > 1 else ''}, e.g. {reasons[0]}")
    failed = sum(r.status == FAIL for r in results)
    skipped = sum(r.status == SKIP for r in results)
    print(f"conformance: {len(results) - failed - skipped} passed, {failed} failed, {skipped} skipped (seed {seed})",
          file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0
