"""One captured decode step of a synthetic model under Nsight Compute (scripts/decode-profile.sh).

``decode_profile.py SPEC [DEPTH]`` (SPEC: SHAPE:TYPE, or a TYPE of llama-1b) fills DEPTH cached positions with one
prefill (default 64, as mid-way through tg128), runs a few decode steps and profiles one replay between
cuProfilerStart/Stop;
``decode_profile.py --summarize FILE.csv`` prints device time and DRAM bytes per kernel name from ncu's CSV."""

from __future__ import annotations

import csv
import sys
import tempfile
from collections import defaultdict
from pathlib import Path


def profile(spec: str, depth: int) -> None:
    from cuda.bindings import driver

    from rocmforge_core.cli.bench import write_synthetic
    from rocmforge_core.engine import Engine
    from rocmforge_core.engine.model import Model
    with tempfile.TemporaryDirectory() as tmp:
        model = Model(write_synthetic(spec if ":" in spec else f"llama-1b:{spec}", Path(tmp)), backend="hip")
        engine, be = Engine(model, n_ctx=depth + 600), model.backend
        slot = engine.add_sequence()
        engine.step([1] * depth, [slot] * depth, list(range(depth)), [depth - 1], "prefill")
        for pos in range(depth, depth + 4):  # eager, capture, then replays
            engine.step([1], [slot], [pos], [0], "decode")
        be.synchronize()
        driver.cuProfilerStart()
        engine.step([1], [slot], [depth + 4], [0], "decode")
        be.synchronize()
        driver.cuProfilerStop()
        model.close()


def summarize(path: str) -> None:
    text = Path(path).read_text()
    rows = list(csv.DictReader(line for line in text.splitlines() if line.startswith('"')))
    per = defaultdict(lambda: [0, 0.0, 0.0])  # kernel -> calls, us, MB
    ids = set()
    for r in rows:
        name = r["Kernel Name"].split("(")[0]
        value = float(r["Metric Value"].replace(",", ""))
        unit = r["Metric Unit"]
        entry = per[name]
        if r["Metric Name"] == "gpu__time_duration.sum":
            entry[0] += 1
            entry[1] += value * {"ns": 1e-3, "nsecond": 1e-3, "ms": 1e3, "msecond": 1e3}.get(unit, 1.0)
        else:
            entry[2] += value / {"byte": 1e6, "Kbyte": 1e3, "Mbyte": 1, "Gbyte": 1e-3}.get(unit, 1e6)
        ids.add(r["ID"])
    total = sum(e[1] for e in per.values())
    print(f"{len(ids)} kernels, {total:.1f} us device busy, {sum(e[2] for e in per.values()):.1f} MB read")
    for name, (calls, us, mb) in sorted(per.items(), key=lambda kv: -kv[1][1]):
        print(f"  {name:<28} {calls:4d} calls {us:8.1f} us {us / calls:6.2f} us/call {mb:8.1f} MB "
              f"{mb / us if us else 0:5.2f} TB/s")


if __name__ == "__main__":
    summarize(sys.argv[2]) if sys.argv[1] == "--summarize" else profile(sys.argv[1], int((sys.argv[2:] or [64])[0]))
