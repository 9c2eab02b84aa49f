"""`rocmforge explain` on a tiny GGUF model with fake backends: fallbacks with reasons, grouping across layers,
rule locations, the gpu_layers split and its copies per token."""

from __future__ import annotations

import argparse
import json

import pytest
from gguf import GGMLQuantizationType as T

from rocmforge_core.cli import explain as explain_cli
from rocmforge_core.cli.explain import explain
from rocmforge_core.scheduler import report

from .fakes import CPUPlugin, GPUPlugin
from .tiny_model import write_tiny_llama


@pytest.fixture
def tiny(tmp_path):
    return write_tiny_llama(tmp_path / "tiny.gguf", down_type=T.Q4_1, down_layers=(2,))


@pytest.fixture
def reg(make_registry):
    return make_registry(gpu=GPUPlugin(refuse_formats={"Q4_1"}), cpu=CPUPlugin())


def groups(out, phase="decode"):
    return {g["name"]: g for g in out["steps"][phase]["sites"]}


def test_unsupported_format_falls_back_with_its_reason(reg, tiny):
    out, _ = explain(tiny, backend="gpu", use_tuning=False, prefill_tokens=8)
    for phase in ("decode", "prefill"):
        g = groups(out, phase)
        assert g["blk.2.ffn_down"]["backend"] == "cpu"
        assert "gpu cannot read Q4_1 weights" in g["blk.2.ffn_down"]["notes"][0]
        assert {c["kernel"]: c["ok"] for c in g["blk.2.ffn_down"]["candidates"]} == {
            "cpu.matmul": True, "reference.matmul": True, "gpu.matmul": False}
        assert g["blk.[0-1,3].ffn_down"]["backend"] == "gpu" and g["blk.[0-1,3].ffn_down"]["layers"] == [0, 1, 3]
        assert g["blk.[0-3].attn_q"]["backend"] == "gpu"
        summary = out["steps"][phase]["summary"]
        assert summary["copies_by_direction"] == {"cpu->gpu": 1, "gpu->cpu": 1}
        assert summary["backends"]["cpu"]["ops"] == 1
    text = report.render(out)
    assert "blk.[0-1,3].ffn_down  x3" in text and "fallback to cpu: gpu: gpu.matmul says gpu cannot read" in text


def test_rules_are_cited_with_file_and_line(reg, tiny, tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("default: gpu\nrules:\n  - name: attn_(q|k)$\n    layers: [1, 2]\n    backend: cpu\n"
                       "    why: testing\n")
    out, _ = explain(tiny, profile=profile, use_tuning=False, prefill_tokens=8)
    g = groups(out)
    assert g["blk.[1-2].attn_q"]["backend"] == "cpu"
    assert g["blk.[1-2].attn_q"]["decided_by"] == {"kind": "rule", "where": f"{profile}:3", "backends": ["cpu"],
                                                    "why": "testing"}
    assert g["blk.[0,3].attn_q"]["backend"] == "gpu"
    assert f"decided by rule ({profile}:3) -> cpu: testing" in report.render(out)


def test_gpu_layers_split_and_copies_per_token(reg, tmp_path):
    tiny = write_tiny_llama(tmp_path / "tiny.gguf")
    profile = tmp_path / "ngl.yaml"
    profile.write_text("default: gpu\ngpu_layers: 2\n")
    out, _ = explain(tiny, profile=profile, use_tuning=False, prefill_tokens=8)
    decode = out["steps"]["decode"]
    placed = {g["name"]: g["backend"] for g in decode["sites"]}
    assert placed["blk.[0-1].ffn_down"] == "cpu" and placed["blk.[2-3].ffn_down"] == "gpu"
    assert placed["token_embd"] == "cpu" and placed["output"] == "gpu" and placed["sample"] == "gpu"
    summary = decode["summary"]
    assert summary["split"] == "layers 2-3 (2 of 4) and output head on the GPU"
    # Per token: the residual stream enters the gpu once; the step inputs (kept on the preferred gpu) go to the
    # cpu layers: token ids, positions, sequence ids and block tables.
    assert summary["copies_by_direction"] == {"cpu->gpu": 1, "gpu->cpu": 4}
    assert summary["readback"]["from"] == "gpu"
    text = report.render(out)
    assert "offload: layers 2-3 (2 of 4) and output head on the GPU" in text
    assert "copies per token: 5" in text


def test_explain_cli_json(reg, tiny, capsys):
    parser = argparse.ArgumentParser()
    explain_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["explain", "--model", str(tiny), "--backend", "cpu", "--json", "--no-tuning",
                              "--prefill-tokens", "4"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert {g["backend"] for s in out["steps"].values() for g in s["sites"]} == {"cpu"}
    assert out["steps"]["decode"]["summary"]["copies_per_step"] == 0
