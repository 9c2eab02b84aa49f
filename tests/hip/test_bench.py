"""`rocmforge bench` on any backend: llama-bench's pp/tg tests over a synthetic model written on the fly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rocmforge_core.cli.shapes import ShapeError, write_synthetic


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rocmforge_core.cli.bench", *args], capture_output=True, text=True,
                          timeout=300)


def test_bench_synthetic_model_json(tmp_path):
    proc = bench("--synthetic", "llama-tiny:Q4_K_M", "-p", "16", "-n", "4", "-r", "2", "--backend", "reference",
                 "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["backend"] == "reference" and report["model"] == "llama-tiny:Q4_K_M"
    assert report["fallbacks"] == 0  # no kernel was replaced at run time: the figures are the backend's
    tests = {r["test"]: r for r in report["results"]}
    assert set(tests) == {"pp16", "tg4"}
    for r in tests.values():
        assert r["reps"] == 2 and len(r["samples_s"]) == 2 and r["avg_ts"] > 0


def test_synthetic_mix_follows_llama_cpp(tmp_path):
    from rocmforge_core.gguf import open_gguf
    with open_gguf(write_synthetic("gemma3-tiny:Q4_K_M", tmp_path)) as f:
        assert f.config.tied_output and f.tensors["token_embd.weight"].type_name == "Q6_K"  # the output's type
    with open_gguf(write_synthetic("llama-tiny:Q4_K_M", tmp_path)) as f:
        types = {name: info.type_name for name, info in f.tensors.items()}
        assert f.config.n_layers == 2 and not f.config.tied_output
    assert types["output.weight"] == "Q6_K" and types["token_embd.weight"] == "Q4_K"
    assert types["blk.0.attn_q.weight"] == "Q4_K"
    assert types["blk.0.ffn_down.weight"] == "Q4_K"
    assert types["blk.1.ffn_down.weight"] == "Q6_K"  # the last eighth of the layers gets more bits
    assert types["blk.0.attn_norm.weight"] == "F32"


def test_bad_synthetic_spec_names_the_choices(tmp_path):
    with pytest.raises(ShapeError, match="llama-1b"):
        write_synthetic("llama-7b:Q4_0", tmp_path)


def test_bench_at_depth_fills_the_context_first(tmp_path):
    proc = bench("--synthetic", "llama-tiny:Q8_0", "-p", "20", "-n", "4", "-r", "2", "-d", "0,40", "-ctk", "f16",
                 "--backend", "reference", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["n_ctx"] == 40 + 20 + 1 and report["cache_type"] == "f16"  # sized for the deepest test
    assert [(r["test"], r["n_depth"]) for r in report["results"]] == [("pp20", 0), ("tg4", 0), ("pp20", 40),
                                                                       ("tg4", 40)]
    assert all(r["avg_ts"] > 0 and len(r["samples_s"]) == 2 for r in report["results"])
    assert report["results"][2]["depth_fill_s"] > 0 == report["results"][0]["depth_fill_s"]
    table = bench("--synthetic", "llama-tiny:Q8_0", "-p", "0", "-n", "2", "-r", "1", "-d", "16",
                  "--backend", "reference")
    assert table.returncode == 0, table.stderr
    assert "| tg2 @ d16 |" in table.stdout


@pytest.mark.parametrize("args,message", [
    (["-d", "4096,x"], "-d takes depths in tokens"),
    (["-d", "-5"], "-d takes depths in tokens"),
    (["-d", "100", "-c", "64"], "-c 64 cannot hold the tests' 228 tokens"),
    (["-d", "4096"], "exceeds the 2048 this model was trained for"),
])
def test_bench_depth_errors_say_what_is_wrong(args, message):
    proc = bench("--synthetic", "llama-tiny:Q8_0", "-p", "0", "-n", "128", "-r", "1", "--backend", "reference", *args)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
