"""Placement through the planner: a backend with non-numpy tensors (tests/engine/boxed_backend.py) running all or
part of a model, weight uploads, activation copies between backends, captured decode steps, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from .boxed_backend import Box, BoxedBackend, plugin, registry_with
from rocmforge_core.engine import Engine, Model, SamplingParams
from rocmforge_core.errors import PluginError, ProfileError, UnsupportedError
from rocmforge_core.registry import PluginRecord, Registry
from rocmforge_core.scheduler import Planner

GREEDY = SamplingParams(temperature=0)
PROMPT = [5, 17, 3, 60, 2, 2, 9]


@pytest.fixture(scope="module")
def reference_run(tiny_llama):
    model = Model(tiny_llama, backend="reference")
    engine = Engine(model, n_ctx=32)
    slot = engine.add_sequence()
    logits = engine.logits_to_host(engine.prefill(slot, PROMPT, all_logits=True).logits)
    engine.free_sequence(slot)
    return logits, engine.generate(PROMPT, max_tokens=6, sampling=GREEDY).ids


def run(model):
    engine = Engine(model, n_ctx=32)
    slot = engine.add_sequence()
    logits = engine.logits_to_host(engine.prefill(slot, PROMPT, all_logits=True).logits)
    engine.free_sequence(slot)
    return engine, logits, engine.generate(PROMPT, max_tokens=6, sampling=GREEDY)


def test_whole_model_on_a_device_backend_with_captured_decode(tiny_llama, reference_run):
    backend = BoxedBackend()
    model = Model(tiny_llama, backend="boxed", registry=registry_with(backend))
    assert {c.backend for c in model.plan.choices.values()} == {"boxed"}
    assert isinstance(model.weights.matrix("blk.0.attn_q.weight", backend).data, Box)
    engine, logits, gen = run(model)
    np.testing.assert_allclose(logits, reference_run[0], atol=1e-6)
    assert gen.ids == reference_run[1]
    assert engine.cache.k[0].__class__ is Box  # the cache lives where attention runs
    # decode steps: the first runs eagerly, then one capture, replayed for every later step
    assert backend.captures == 1 and backend.replays == len(gen.ids) - 2
    assert gen.stats.copies == 0


def test_ops_a_backend_lacks_fall_back_with_copies(tiny_llama, reference_run):
    backend = BoxedBackend(ops_supported=("embedding", "matmul"))
    model = Model(tiny_llama, backend="boxed", registry=registry_with(backend))
    order = model.plan.order
    assert order[0] == "boxed" and order[-1] == "reference"
    placed = {site: c.backend for (site, phase), c in model.plan.choices.items()}
    assert placed["blk.0.attn_q"] == "boxed" and placed["blk.0.attn"] == order[1]
    assert model.plan.choices[("blk.0.attn", "decode")].reason.startswith("fallback")
    engine, logits, gen = run(model)
    np.testing.assert_allclose(logits, reference_run[0], atol=1e-4)
    assert gen.ids == reference_run[1]
    assert gen.stats.copies > 0 and backend.captures == 0  # a step spanning backends is not captured


def test_no_capable_kernel_names_the_site(tiny_llama):
    registry = Registry()
    registry.load_entry_points(only=["format.f32", "arch.llama"])
    registry.add_plugin(plugin(BoxedBackend(ops_supported=("embedding", "matmul", "rmsnorm"))),
                        PluginRecord("boxed", "tests", "0", "boxed_backend"))
    with pytest.raises(UnsupportedError, match=r"blk\.0\.attn_q\.rope"):
        Model(tiny_llama, backend="boxed", registry=registry)


def test_backend_errors_are_clear(tiny_llama):
    registry = registry_with(BoxedBackend())
    with pytest.raises(PluginError, match="no backend named 'nope'"):
        Planner(registry, "nope")
    registry.backends["boxed"].available = lambda: __import__("rocmforge_core.ops").ops.no("no box here")
    with pytest.raises(PluginError, match="no box here"):
        Model(tiny_llama, backend="boxed", registry=registry)
    with pytest.raises(ProfileError, match="cannot read profile fast.yaml"):
        Planner(registry, "reference", profile="fast.yaml")


def test_recorded_decode_steps_follow_plan_changes(tiny_llama, reference_run):
    """Decode steps replay the calls recorded on the first one; a plan change (Plan.version) re-records them."""
    model = Model(tiny_llama, backend="reference")
    engine = Engine(model, n_ctx=32)
    calls = []
    plan = model.plan
    for choice in plan.by_signature.values():
        if choice.site == "blk.1.ffn_down":
            original = choice.kernel

            def spy(*args, _fn=original.fn, **params):
                calls.append(1)
                return _fn(*args, **params)
            choice.kernel = type(original)(original.op, original.backend, "spy", spy)
    assert engine.generate(PROMPT, max_tokens=6, sampling=GREEDY).ids == reference_run[1]
    assert len(calls) == 5  # each decode step (m = 1), recorded once and replayed
    for choice in plan.by_signature.values():
        if choice.site == "blk.1.ffn_down":
            choice.kernel = original
    calls.clear()
    engine.generate(PROMPT, max_tokens=3, sampling=GREEDY)
    assert len(calls) == 2  # the records still hold the old kernel ...
    plan.version += 1
    calls.clear()
    assert engine.generate(PROMPT, max_tokens=6, sampling=GREEDY).ids == reference_run[1]
    assert calls == []  # ... until the plan's version changes


def test_a_sampler_on_another_backend_does_not_prevent_capture(tiny_llama, reference_run):
    backend = BoxedBackend(ops_supported=tuple(op for op in BoxedBackend().ops_supported if op != "sample"))
    model = Model(tiny_llama, backend="boxed", registry=registry_with(backend))
    _, _, gen = run(model)
    assert model.plan.choices[("sample", "decode")].backend != "boxed"
    assert gen.ids == reference_run[1] and backend.captures == 1


def test_a_kernel_failing_in_a_replayed_step_falls_back_at_once(tiny_llama):
    """A failure inside a replayed (bound) decode step is not swallowed: the executor asks the planner for the next
    candidate and runs the call on it, without trying the failed kernel again."""
    model = Model(tiny_llama, backend="reference")
    engine = Engine(model, n_ctx=32)
    failing, runs = [], []
    for choice in model.plan.by_signature.values():
        if choice.site == "blk.0.ffn_up" and choice.phase == "decode":
            def flaky(*args, _fn=choice.kernel.fn, **params):
                if failing:
                    runs.append(1)
                    raise RuntimeError("kernel fault")
                return _fn(*args, **params)
            choice.kernel = type(choice.kernel)("matmul", "reference", "flaky", flaky)
    slot = engine.add_sequence()
    engine.prefill(slot, PROMPT)
    engine.step([1], [slot], [len(PROMPT)], [0], "decode")  # bound with the flaky kernel
    failing.append(True)
    engine.step([2], [slot], [len(PROMPT) + 1], [0], "decode")
    engine.step([3], [slot], [len(PROMPT) + 2], [0], "decode")
    assert len(runs) == 1  # failed once, then the next candidate ran, and the step was bound again without it
    assert model.plan.fallbacks == 1 and model.planner.events[0]["kernel"] == "flaky"


def test_a_repeated_prefill_shape_is_captured_on_its_second_use(tiny_llama, reference_run):
    backend = BoxedBackend()
    engine = Engine(Model(tiny_llama, backend="boxed", registry=registry_with(backend)), n_ctx=32)
    runs = []
    for expected_captures in (0, 1, 1):  # eager, then captured and replayed, then replayed again
        slot = engine.add_sequence()
        runs.append(engine.logits_to_host(engine.prefill(slot, PROMPT, all_logits=True).logits))
        engine.free_sequence(slot)
        assert backend.captures == expected_captures
    assert backend.replays == 2
    for logits in runs:
        np.testing.assert_allclose(logits, reference_run[0], atol=1e-6)
