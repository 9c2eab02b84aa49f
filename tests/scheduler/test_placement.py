"""Placement of hand-made site sequences on fake backends: fallback, copies, profiles, offload."""

from __future__ import annotations

import logging

import pytest

from rocmforge_core.errors import PluginError, UnsupportedError
from rocmforge_core.ops import no
from rocmforge_core.scheduler.placement import Placer
from rocmforge_core.scheduler.profile import parse_profile

from .fakes import CPUPlugin, GPUPlugin
from .handmade import D, F, V, model_sites


def backends(step):
    return {p.site.name: p.backend for p in step.sites}


def test_gpu_runs_everything_it_can_and_cpu_the_rest(make_registry):
    reg = make_registry(gpu=GPUPlugin(refuse_formats={"Q4_K"}), cpu=CPUPlugin())
    step = Placer(reg, "gpu").place(model_sites(fmts={2: "Q4_K"}))
    placed = backends(step)
    assert {placed[f"blk.2.{t}"] for t in ("attn_q", "ffn_gate", "ffn_up", "ffn_down")} == {"cpu"}
    assert all(b == "gpu" for n, b in placed.items() if not n.startswith("blk.2."))
    fallback = next(p for p in step.sites if p.site.name == "blk.2.ffn_down")
    assert fallback.notes and "Q4_K" in fallback.notes[0]
    assert [k.backend for k in fallback.ranked] == ["cpu", "reference"]


def test_cheap_ops_between_cpu_ops_join_them(make_registry):
    """gate and up run on cpu (gpu refuses Q4_K); the activation between them and down (also cpu) stays on cpu
    instead of bouncing to the gpu and back."""
    reg = make_registry(gpu=GPUPlugin(refuse_formats={"Q4_K"}), cpu=CPUPlugin())
    step = Placer(reg, "gpu").place(model_sites(fmts={1: "Q4_K"}))
    placed = backends(step)
    # The norms, adds and activation of layer 1 join its matmuls: the residual stream crosses in once and out
    # once, instead of twice each way.
    assert {b for n, b in placed.items() if n.startswith("blk.1.")} == {"cpu"}
    assert [(c.source, c.dest) for c in step.copies] == [("gpu", "cpu"), ("cpu", "gpu"), ("gpu", "host")]


def test_all_gpu_has_only_the_readback(make_registry):
    reg = make_registry(gpu=GPUPlugin(), cpu=CPUPlugin())
    step = Placer(reg, "gpu").place(model_sites())
    assert set(backends(step).values()) == {"gpu"}
    assert [(c.source, c.dest) for c in step.copies] == [("gpu", "host")]


def test_backend_cpu_keeps_everything_on_the_host(make_registry):
    reg = make_registry(gpu=GPUPlugin(), cpu=CPUPlugin(refuse_ops={"rope"}))
    step = Placer(reg, "cpu").place(model_sites())
    assert set(backends(step).values()) == {"cpu"}
    assert step.copies == []


def test_no_capable_kernel_is_a_clear_error(make_registry):
    reg = make_registry(gpu=GPUPlugin(refuse_ops={"rmsnorm"}))
    reg.kernels = [k for k in reg.kernels if not (k.op == "rmsnorm" and k.backend == "reference")]
    with pytest.raises(UnsupportedError, match="blk.0.attn_norm"):
        Placer(reg, "gpu").place(model_sites(1))


def profile(reg, text):
    prof, problems = parse_profile(text, "p.yaml", reg)
    assert prof is not None, problems
    return prof


def test_profile_rules_and_op_choices_place_sites_as_written(make_registry):
    reg = make_registry(gpu=GPUPlugin(), cpu=CPUPlugin())
    prof = profile(reg, """
default: gpu
ops:
  activation: cpu
rules:
  - name: ffn_down$
    layers: [1, 2]
    backend: cpu
  - op: matmul
    format: q6_k
    backend: [reference, gpu]
""")
    step = Placer(reg, None, prof).place(model_sites())
    placed = backends(step)
    assert [placed[f"blk.{i}.ffn_down"] for i in range(4)] == ["gpu", "cpu", "cpu", "gpu"]
    assert {placed[f"blk.{i}.ffn_act"] for i in range(4)} == {"cpu"}
    assert placed["output"] == "reference"
    down = next(p for p in step.sites if p.site.name == "blk.1.ffn_down")
    assert down.origin.kind == "rule" and down.origin.where == "p.yaml:6"


def test_gpu_layers_offloads_the_last_layers_and_the_head(make_registry):
    reg = make_registry(gpu=GPUPlugin(), cpu=CPUPlugin())
    step = Placer(reg, None, profile(reg, "default: gpu\ngpu_layers: 2\n")).place(model_sites(4))
    placed = backends(step)
    assert {placed[f"blk.{i}.ffn_down"] for i in (0, 1)} == {"cpu"}
    assert {placed[f"blk.{i}.ffn_down"] for i in (2, 3)} == {"gpu"}
    assert placed["token_embd"] == "cpu" and placed["output"] == "gpu"
    # One crossing into the gpu part (the residual stream, read by layer 2's norm and its residual add).
    assert [(c.source, c.dest) for c in step.copies] == [("cpu", "gpu"), ("gpu", "host")]


def test_gpu_memory_budget_places_what_fits(make_registry):
    reg = make_registry(gpu=GPUPlugin(), cpu=CPUPlugin())
    sites = model_sites(4)
    per_layer = D * D + 3 * F * D
    prof = profile(reg, f"default: gpu\ngpu_memory: {V * D + 2 * per_layer + 10}\ncontext: 1\n")
    step = Placer(reg, None, prof).place(sites)
    assert step.split.gpu_layers == {2, 3} and step.split.head and not step.split.front


def test_a_profile_default_that_cannot_run_here_is_an_error_as_backend_is(make_registry, caplog):
    gpu = GPUPlugin()
    reg = make_registry(gpu=gpu, cpu=CPUPlugin())
    gpu.backend.available = lambda: no("no fake device here")
    with pytest.raises(PluginError, match=r"the profile's default backend gpu \(p\.yaml:1\) cannot run here "
                                          r"\(gpu: no fake device here\); list one that can after it"):
        Placer(reg, None, profile(reg, "default: gpu\n"))
    # A fallback listed in the profile is used, and the run says so.
    caplog.set_level(logging.WARNING, logger="rocmforge.scheduler")
    placer = Placer(reg, None, profile(reg, "default: [gpu, cpu]\n"))
    assert set(backends(placer.place(model_sites(1))).values()) == {"cpu"}
    assert "default backend gpu (p.yaml:1) cannot run here" in caplog.text and placer.notes
