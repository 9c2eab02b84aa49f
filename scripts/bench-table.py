"""The table scripts/serving-bench.sh and scripts/single-stream-bench.sh print last, from the raw files their
phases wrote (a missing or broken file leaves "-" in its cells), and with --json all parsed results in one file.

    python scripts/bench-table.py RAW_DIR NAME... [--json results.json]

NAME is a model as the scripts name it (llama-1b-Q4_K_M); per NAME, RAW_DIR holds rf-bench-NAME.json (rocmforge
bench --json), llama-bench-NAME.json (llama-bench -o json), each perhaps also as ...-NAME-depth.json (a second
run at depth: -d), rf-serve-NAME.json and llama-server-NAME.json (python -m rocmforge_core.serve.loadtest),
llama-batched-NAME.jsonl (llama-batched-bench --output-format jsonl). The serving columns and rows appear only
where some serving result is there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def load(path: Path):
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")] or None
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


BENCH_RUNS = ("", "-depth")  # file name suffixes of a model's bench runs


def bench_reports(raw: Path, name: str) -> dict | None:
    """rocmforge bench's reports of a model as one report with the results of all its runs (each result with its
    run's context size and load time)."""
    reports = [r for r in (load(raw / f"rf-bench-{name}{run}.json") for run in BENCH_RUNS) if r]
    if not reports:
        return None
    per_run = ("n_ctx", "load_s", "fallbacks")
    merged = {k: v for k, v in reports[0].items() if k not in per_run}
    merged["results"] = [{**t, **{k: r[k] for k in per_run if k in r}} for r in reports for t in r.get("results", [])]
    return merged


def llama_bench_tests(raw: Path, name: str) -> list[dict] | None:
    tests = [t for run in BENCH_RUNS for t in load(raw / f"llama-bench-{name}{run}.json") or []]
    return tests or None


def test_key(test: str, depth: int) -> str:
    """llama-bench's test names: pp512, tg128 @ d4096."""
    return test + (f" @ d{depth}" if depth else "")


def results(raw: Path, name: str) -> dict:
    return {"rocmforge_bench": bench_reports(raw, name),
            "llama_bench": llama_bench_tests(raw, name),
            "rocmforge_serve": load(raw / f"rf-serve-{name}.json"),
            "llama_server": load(raw / f"llama-server-{name}.json"),
            "llama_batched": load(raw / f"llama-batched-{name}.jsonl")}


def figure(value: float | None, sd: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" + (f" ± {sd:,.1f}" if sd is not None else "")


def ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}x" if ours and theirs else "-"


def serve_runs(report) -> dict[int, dict]:
    return {run["clients"]: run for run in report["runs"]} if report else {}


def serve_cell(run: dict | None) -> str:
    if run is None:
        return "-"
    notes = [f"{len(run['mismatches'])} differ from 1 client"] if run.get("mismatches") else []
    notes += [f"{run['short']} short"] if run.get("short") else []
    return figure(run["tokens_per_s"]) + (f" ({', '.join(notes)})" if notes else "")


def rows(name: str, r: dict) -> list[list[str]]:
    out = []
    ours, theirs = serve_runs(r["rocmforge_serve"]), serve_runs(r["llama_server"])
    batched = {line["pl"]: line["speed_tg"] for line in r["llama_batched"] or []}
    for clients in sorted(set(ours) | set(theirs) | set(batched)):
        a, b = ours.get(clients), theirs.get(clients)
        out.append([name, f"serve, {clients} client{'s' * (clients != 1)}", serve_cell(a), serve_cell(b),
                    ratio(a and a["tokens_per_s"], b and b["tokens_per_s"]), figure(batched.get(clients))])
    bench = {(t["test"], t.get("n_depth", 0)): t for t in (r["rocmforge_bench"] or {}).get("results", [])}
    llama = {}
    for t in r["llama_bench"] or []:
        llama[f"pp{t['n_prompt']}" if t["n_prompt"] else f"tg{t['n_gen']}", t.get("n_depth", 0)] = t
    for test in sorted(set(bench) | set(llama), key=lambda t: (t[1], t[0][:2] != "pp", t[0])):
        a, b = bench.get(test, {}), llama.get(test, {})
        fell = f" ({a['fallbacks']} kernels fell back)" if a.get("fallbacks") else ""
        out.append([name, test_key(*test), figure(a.get("avg_ts"), a.get("stddev_ts")) + fell,
                    figure(b.get("avg_ts"), b.get("stddev_ts")), ratio(a.get("avg_ts"), b.get("avg_ts")), ""])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("raw", type=Path)
    p.add_argument("names", nargs="+")
    p.add_argument("--json", type=Path, help="write every parsed result here")
    args = p.parse_args(argv)
    everything = {name: results(args.raw, name) for name in args.names}
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))
    first = next((r for r in everything.values() if r["rocmforge_bench"]), None)
    serve = next((r["rocmforge_serve"] or r["llama_server"] for r in everything.values()
                  if r["rocmforge_serve"] or r["llama_server"]), None)
    if first:
        print(f"rocmforge backend {first['rocmforge_bench']['backend']} on {first['rocmforge_bench']['device']}")
    if serve:
        print(f"serve: {serve['requests']} streaming /v1/completions x {serve['max_tokens']} tokens, greedy, "
              "ignore_eos; t/s = completion tokens / wall time")
    serving = any(r["rocmforge_serve"] or r["llama_server"] or r["llama_batched"] for r in everything.values())
    columns = 6 if serving else 5
    print("| model | test | rocmforge t/s | llama.cpp t/s | ratio |"
          + (" llama-batched-bench TG t/s (no HTTP) |" if serving else ""))
    print("|---|---|--:|--:|--:|" + ("--:|" if serving else ""))
    for name, r in everything.items():
        for row in rows(name, r):
            print("| " + " | ".join(row[:columns]) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
