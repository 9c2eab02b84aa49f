"""`rocmforge bench` on any backend: llama-bench's pp/tg tests over a synthetic model written on the fly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rocmforge_core.cli.bench import BenchError, write_synthetic


def test_bench_synthetic_model_json(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rocmforge_core.cli.bench", "--synthetic", "llama-tiny:Q4_K_M",
                           "-p", "16", "-n", "4", "-r", "2", "--backend", "reference", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["backend"] == "reference" and report["model"] == "llama-tiny:Q4_K_M"
    tests = {r["test"]: r for r in report["results"]}
    assert set(tests) == {"pp16", "tg4"}
    for r in tests.values():
        assert r["reps"] == 2 and len(r["samples_s"]) == 2 and r["avg_ts"] > 0


def test_synthetic_mix_follows_llama_cpp(tmp_path):
    from rocmforge_core.gguf import open_gguf
    with open_gguf(write_synthetic("llama-tiny:Q4_K_M", tmp_path)) as f:
        types = {name: info.type_name for name, info in f.tensors.items()}
        assert f.config.n_layers == 2 and f.config.tied_output
    assert types["token_embd.weight"] == "Q6_K"
    assert types["blk.0.attn_q.weight"] == "Q4_K"
    assert types["blk.0.ffn_down.weight"] == "Q4_K"
    assert types["blk.1.ffn_down.weight"] == "Q6_K"  # the last eighth of the layers gets more bits
    assert types["blk.0.attn_norm.weight"] == "F32"


def test_bad_synthetic_spec_names_the_choices(tmp_path):
    with pytest.raises(BenchError, match="llama-1b"):
        write_synthetic("llama-7b:Q4_0", tmp_path)
