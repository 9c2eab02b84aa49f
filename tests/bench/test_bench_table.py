"""The table scripts/serving-bench.sh and scripts/single-stream-bench.sh print last (scripts/bench-table.py), from
raw files of the formats each tool writes; a phase that wrote nothing leaves "-" in its cells."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench-table.py"


def serve_report(runs: list[dict]) -> dict:
    return {"url": "http://127.0.0.1:1", "requests": 64, "max_tokens": 128, "speedup": 1.0,
            "runs": [{"name": "", "requests": 64, "tokens": 8192, "wall_s": 1.0, "ttft_median_s": 0.1, "short": 0,
                      **run} for run in runs]}


def write_raw(raw: Path, name: str) -> None:
    (raw / f"rf-bench-{name}.json").write_text(json.dumps({"backend": "hip", "device": "GPU X", "results": [
        {"test": "pp512", "avg_ts": 1000.0, "stddev_ts": 10.0}, {"test": "tg128", "avg_ts": 200.0, "stddev_ts": 2.0}]}))
    (raw / f"llama-bench-{name}.json").write_text(json.dumps([
        {"n_prompt": 512, "n_gen": 0, "avg_ts": 2000.0, "stddev_ts": 20.0},
        {"n_prompt": 0, "n_gen": 128, "avg_ts": 100.0, "stddev_ts": 1.0}]))
    (raw / f"rf-serve-{name}.json").write_text(json.dumps(serve_report([
        {"clients": 1, "tokens_per_s": 100.0, "mismatches": []},
        {"clients": 8, "tokens_per_s": 400.0, "mismatches": [3]}])))
    (raw / f"llama-server-{name}.json").write_text(json.dumps(serve_report([
        {"clients": 1, "tokens_per_s": 50.0, "mismatches": []},
        {"clients": 8, "tokens_per_s": 800.0, "mismatches": [], "short": 2}])))
    (raw / f"llama-batched-{name}.jsonl").write_text("main: some log line\n" + "\n".join(json.dumps(
        {"pp": 128, "tg": 128, "pl": pl, "speed_tg": tg}) for pl, tg in ((1, 120.0), (8, 900.0))) + "\n")


def table(raw: Path, *names: str, json_out: Path | None = None) -> list[str]:
    extra = ["--json", str(json_out)] if json_out else []
    proc = subprocess.run([sys.executable, str(SCRIPT), str(raw), *names, *extra], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_rows_per_client_count_then_pp_and_tg(tmp_path):
    write_raw(tmp_path, "m")
    lines = table(tmp_path, "m", json_out=tmp_path / "all.json")
    assert lines[0] == "rocmforge backend hip on GPU X"
    assert "64 streaming /v1/completions x 128 tokens" in lines[1]
    assert lines[4:] == [
        "| m | serve, 1 client | 100.0 | 50.0 | 2.00x | 120.0 |",
        "| m | serve, 8 clients | 400.0 (1 differ from 1 client) | 800.0 (2 short) | 0.50x | 900.0 |",
        "| m | pp512 | 1,000.0 ± 10.0 | 2,000.0 ± 20.0 | 0.50x |  |",
        "| m | tg128 | 200.0 ± 2.0 | 100.0 ± 1.0 | 2.00x |  |"]
    merged = json.loads((tmp_path / "all.json").read_text())
    assert merged["m"]["llama_batched"][1]["speed_tg"] == 900.0


def test_missing_phases_leave_dashes(tmp_path):
    write_raw(tmp_path, "m")
    for f in ("llama-bench-m.json", "llama-server-m.json", "llama-batched-m.jsonl"):
        (tmp_path / f).unlink()
    (tmp_path / "rf-bench-m.json").write_text("{not json")
    lines = table(tmp_path, "m", "never-ran")
    assert "| m | serve, 1 client | 100.0 | - | - | - |" in lines
    assert not any("pp512" in line or "never-ran" in line for line in lines)


def test_runs_at_depth_get_rows_of_their_own_and_no_serving_column(tmp_path):
    (tmp_path / "rf-bench-m.json").write_text(json.dumps({"backend": "hip", "device": "GPU X", "results": [
        {"test": "pp512", "n_depth": 0, "avg_ts": 1000.0, "stddev_ts": 10.0},
        {"test": "tg128", "n_depth": 0, "avg_ts": 200.0, "stddev_ts": 2.0}]}))
    (tmp_path / "rf-bench-m-depth.json").write_text(json.dumps({"backend": "hip", "device": "GPU X", "n_ctx": 16513,
                                                                "results": [
        {"test": "tg128", "n_depth": 4096, "avg_ts": 150.0, "stddev_ts": 1.0},
        {"test": "tg128", "n_depth": 16384, "avg_ts": 100.0, "stddev_ts": 1.0}]}))
    (tmp_path / "llama-bench-m.json").write_text(json.dumps([
        {"n_prompt": 512, "n_gen": 0, "n_depth": 0, "avg_ts": 2000.0, "stddev_ts": 20.0},
        {"n_prompt": 0, "n_gen": 128, "n_depth": 0, "avg_ts": 100.0, "stddev_ts": 1.0}]))
    (tmp_path / "llama-bench-m-depth.json").write_text(json.dumps([
        {"n_prompt": 0, "n_gen": 128, "n_depth": 4096, "avg_ts": 75.0, "stddev_ts": 1.0}]))
    lines = table(tmp_path, "m", json_out=tmp_path / "all.json")
    merged = json.loads((tmp_path / "all.json").read_text())["m"]["rocmforge_bench"]
    assert "n_ctx" not in merged and [t.get("n_ctx") for t in merged["results"]] == [None, None, 16513, 16513]
    assert lines[0] == "rocmforge backend hip on GPU X"
    assert lines[1:] == [
        "| model | test | rocmforge t/s | llama.cpp t/s | ratio |", "|---|---|--:|--:|--:|",
        "| m | pp512 | 1,000.0 ± 10.0 | 2,000.0 ± 20.0 | 0.50x |",
        "| m | tg128 | 200.0 ± 2.0 | 100.0 ± 1.0 | 2.00x |",
        "| m | tg128 @ d4096 | 150.0 ± 1.0 | 75.0 ± 1.0 | 2.00x |",
        "| m | tg128 @ d16384 | 100.0 ± 1.0 | - | - |"]


def test_a_run_whose_kernels_fell_back_is_marked(tmp_path):
    """rocmforge bench counts run-time fallbacks (the figures are then not the backend's alone): the depth run
    here had two, the plain run none."""
    (tmp_path / "rf-bench-m.json").write_text(json.dumps({"backend": "hip", "device": "GPU X", "fallbacks": 0,
                                                          "results": [{"test": "tg128", "avg_ts": 200.0,
                                                                       "stddev_ts": 2.0}]}))
    (tmp_path / "rf-bench-m-depth.json").write_text(json.dumps({"backend": "hip", "device": "GPU X", "fallbacks": 2,
                                                                "results": [{"test": "tg128", "n_depth": 4096,
                                                                             "avg_ts": 20.0, "stddev_ts": 1.0}]}))
    lines = table(tmp_path, "m")
    assert "| m | tg128 | 200.0 ± 2.0 | - | - |" in lines
    assert "| m | tg128 @ d4096 | 20.0 ± 1.0 (2 kernels fell back) | - | - |" in lines
