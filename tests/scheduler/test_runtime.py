"""The scheduler inside the engine, on a tiny GGUF model with fake backends: a format the preferred backend
cannot read runs on the fallback with the logits of an all-fallback run; kernels failing mid-generation (raising,
or returning NaN) are replaced and the text is unchanged; --strict makes that an error; profiles place sites as
written; gpu_layers splits the model, and explain predicts the engine's copies per token."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from rocmforge_core.cli.explain import explain
from rocmforge_core.engine import Engine, Model, SamplingParams
from rocmforge_core.engine.executor import NonFiniteError
from rocmforge_core.scheduler import KernelFailure

from .fakes import CPUPlugin, GPUPlugin
from .tiny_model import write_tiny_llama

GREEDY = SamplingParams(temperature=0)
PROMPT = [5, 17, 3, 60, 2, 2, 9, 41]
TOKENS = 8


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("rt") / "tiny.gguf", down_type=T.Q4_1, down_layers=(2,))


def run(model):
    """Logits of every prompt position, and greedy generation after the prompt."""
    engine = Engine(model, n_ctx=64)
    slot = engine.add_sequence()
    logits = engine.logits_to_host(engine.prefill(slot, PROMPT, all_logits=True).logits)
    engine.free_sequence(slot)
    return logits, engine.generate(PROMPT, max_tokens=TOKENS, sampling=GREEDY)


@pytest.fixture
def cpu_run(make_registry, tiny):
    reg = make_registry(cpu=CPUPlugin())
    logits, gen = run(Model(tiny, backend="cpu", registry=reg))
    assert len(gen.ids) == TOKENS
    return logits, gen.ids


def placed(model, phase="decode"):
    return {site: c.backend for (site, p), c in model.plan.choices.items() if p == phase}


def planned(model, phase="decode"):
    return {name: p.backend for (name, p_), p in model.planner.sites.items() if p_ == phase}


def test_unsupported_format_runs_on_cpu_inside_a_gpu_model(make_registry, tiny, cpu_run):
    gpu = GPUPlugin(refuse_formats={"Q4_1"})
    model = Model(tiny, backend="gpu", registry=make_registry(gpu=gpu, cpu=CPUPlugin()))
    where = placed(model)
    assert where["blk.2.ffn_down"] == "cpu"
    assert all(b == "gpu" for s, b in where.items() if s != "blk.2.ffn_down")
    logits, gen = run(model)
    np.testing.assert_array_equal(logits, cpu_run[0])
    assert gen.ids == cpu_run[1]
    assert gen.stats.fallbacks == 0 and gen.stats.copies == 2 * (TOKENS - 1) + 2  # ffn_act out, ffn_down back
    assert gpu.calls["matmul"] > 0


@pytest.mark.parametrize("mode, op", [("raise", "matmul"), ("nan", "rmsnorm"), ("raise", "attention")])
def test_kernel_failing_mid_generation_is_replaced_and_text_is_unchanged(make_registry, tiny, cpu_run, caplog,
                                                                         mode, op):
    calls_per_run = {"matmul": 8 * 4 + 1, "rmsnorm": 2 * 4 + 1, "attention": 4}[op]
    fail_from = 2 * calls_per_run + calls_per_run // 2  # inside the second decode step
    gpu = GPUPlugin(fail={op: lambda n: mode if n >= fail_from else None})
    model = Model(tiny, backend="gpu", registry=make_registry(gpu=gpu, cpu=CPUPlugin()))
    caplog.set_level(logging.WARNING, logger="rocmforge.scheduler")
    logits, gen = run(model)
    np.testing.assert_array_equal(logits, cpu_run[0])
    assert gen.ids == cpu_run[1]
    events = model.planner.events
    assert events and gen.stats.fallbacks == len(events)
    assert all(e["kernel"] == f"gpu.{op}" and e["phase"] == "decode" for e in events)
    problem = "raised RuntimeError" if mode == "raise" else "returned non-finite values where the reference does not"
    assert problem in events[0]["problem"]
    assert len([r for r in caplog.records if "gpu." + op in r.getMessage()]) == len(events)
    # The replacement keeps being used: the failing kernel is not called again for that signature.
    assert placed(model)[events[0]["site"]] in ("cpu", "reference")


def test_the_first_kernel_whose_output_went_bad_is_blamed_not_the_one_that_made_nan(make_registry, tiny, cpu_run):
    """A norm returning finite but wrong values makes attention's scores overflow: the re-checked step holds each
    output to the reference on the same inputs and replaces the norm, not attention."""
    gpu = GPUPlugin(fail={"rmsnorm": lambda n: "huge" if n >= 30 else None})
    model = Model(tiny, backend="gpu", registry=make_registry(gpu=gpu, cpu=CPUPlugin()))
    logits, gen = run(model)
    assert gen.ids == cpu_run[1]
    kernels = {e["kernel"] for e in model.planner.events}
    assert kernels == {"gpu.rmsnorm"}
    assert "far from the reference" in model.planner.events[0]["problem"]


def nan_in_a_norm_weight(model):
    name, weights = "blk.1.ffn_norm.weight", model.weights
    raw = np.array(weights.host(name).data, copy=True)
    raw.view(np.float32).reshape(-1)[3] = np.nan
    weights._host[name] = weights.host(name).with_data(raw, "")
    for key in [k for k in weights._resident if k[1] == name]:
        del weights._resident[key]
    return model


def test_logits_the_reference_also_makes_non_finite_name_the_first_site(make_registry, tiny):
    """When every kernel agrees with its reference and the logits are still NaN (here a NaN in a norm weight), the
    step raises NonFiniteError naming the first site whose output went non-finite."""
    model = nan_in_a_norm_weight(Model(tiny, backend="cpu", registry=make_registry(cpu=CPUPlugin())))
    with pytest.raises(NonFiniteError, match=r"blk\.1\.ffn_norm \(prefill\) was the first site"):
        run(model)


def test_a_sampler_refusing_non_finite_logits_is_not_blamed(make_registry, tiny):
    """Sampling (not greedy) NaN logits made the sampler raise; each sampler was failed over in turn until none was
    left ("no kernel left to run sample"), for the rest of the run. The step goes to the checked run instead."""
    model = nan_in_a_norm_weight(Model(tiny, backend="cpu", registry=make_registry(cpu=CPUPlugin())))
    engine = Engine(model, n_ctx=64)
    for _ in range(2):  # and again: the sampler is still there
        with pytest.raises(NonFiniteError, match=r"blk\.1\.ffn_norm \(prefill\) was the first site"):
            engine.generate(PROMPT, max_tokens=4, sampling=SamplingParams(temperature=0.8, seed=1))
    assert not [e for e in model.planner.events if e["site"] == "sample"]


def test_strict_turns_a_fallback_into_an_error(make_registry, tiny):
    gpu = GPUPlugin(fail={"matmul": lambda n: "raise" if n >= 60 else None})
    model = Model(tiny, backend="gpu", registry=make_registry(gpu=gpu, cpu=CPUPlugin()), strict=True)
    with pytest.raises(KernelFailure, match="--strict"):
        run(model)


def test_profile_places_sites_as_written(make_registry, tiny, tmp_path, cpu_run):
    profile = tmp_path / "p.yaml"
    profile.write_text("default: gpu\nops:\n  sample: cpu\nrules:\n  - name: attn_(q|k|v)$\n    layers: [0, 1]\n"
                       "    backend: cpu\n  - op: rmsnorm\n    phase: prefill\n    backend: reference\n")
    model = Model(tiny, backend=None, profile=profile,
                  registry=make_registry(gpu=GPUPlugin(refuse_formats={"Q4_1"}), cpu=CPUPlugin()))
    decode, prefill = planned(model), planned(model, "prefill")
    assert decode["sample"] == prefill["sample"] == "cpu"
    assert {decode[f"blk.{i}.attn_{t}"] for i in (0, 1) for t in "qkv"} == {"cpu"}
    assert {decode[f"blk.{i}.attn_{t}"] for i in (2, 3) for t in "qkv"} == {"gpu"}
    assert {prefill[f"blk.{i}.attn_norm"] for i in range(4)} == {"reference"}
    # Moving layers 0-1's norm next to its cpu readers would save no copy (its input is on the gpu): it stays.
    assert {decode[f"blk.{i}.attn_norm"] for i in range(4)} == {"gpu"}
    logits, gen = run(model)
    np.testing.assert_array_equal(logits, cpu_run[0])
    assert gen.ids == cpu_run[1]
    assert placed(model) == decode  # the engine ran every site where the plan put it


def test_gpu_layers_split_matches_cpu_and_explain_predicts_the_copies(make_registry, tiny, tmp_path, cpu_run):
    profile = tmp_path / "ngl.yaml"
    profile.write_text("default: gpu\ngpu_layers: 2\n")
    reg = make_registry(gpu=GPUPlugin(), cpu=CPUPlugin())
    model = Model(tiny, backend=None, profile=profile, registry=reg)
    where = placed(model)
    assert {where[f"blk.{i}.ffn_down"] for i in (0, 1)} == {"cpu"}
    assert {where[f"blk.{i}.ffn_down"] for i in (2, 3)} == {"gpu"}
    engine = Engine(model, n_ctx=64)
    assert engine.cache.k[0].__class__.__name__ == "ndarray" and engine.cache.k[3].__class__.__name__ == "DevArray"
    logits, gen = run(model)
    np.testing.assert_array_equal(logits, cpu_run[0])
    assert gen.ids == cpu_run[1]
    out, _ = explain(tiny, profile=profile, use_tuning=False, prefill_tokens=len(PROMPT))
    decode = out["steps"]["decode"]["summary"]
    assert decode["split"] == "layers 2-3 (2 of 4) and output head on the GPU"
    # The engine copies exactly what explain predicts, per decode step (the sampler's history included).
    steps = TOKENS - 1
    prefill = out["steps"]["prefill"]["summary"]["copies_per_step"]
    assert decode["copies_per_step"] == prefill == 5
    assert gen.stats.copies == prefill + steps * decode["copies_per_step"]
