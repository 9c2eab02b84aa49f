"""The engine's own cost per step: every kernel swapped for one returning a cached result, so what is timed is
the bound step's replay, input writes and the Python between ops (docs/PERF.md)."""

from __future__ import annotations

import pytest

from rocmforge_core.engine import Engine, Model

PREFILL_TOKENS = 512


def stub_bound_kernels(engine, phase):
    """Swap the kernels of the step shape of ``phase`` bound so far for ones returning their first result."""
    (shape,) = [s for s in engine._shapes.values() if s.key[0] == phase]
    calls = [c for c in shape.bound.calls if c.site is not None]
    cached = {}

    def no_op(call, fn):
        def run(*args, **params):
            if call.index not in cached:
                cached[call.index] = fn(*args, **params)
            return cached[call.index]
        return run
    for call in calls:
        call.fn = no_op(call, call.fn)
    return len(calls), cached


@pytest.fixture(scope="module")
def smollm2_model(smollm2_path):
    return Model(smollm2_path, backend="reference")


def test_decode_step_overhead(benchmark, smollm2_model):
    engine = Engine(smollm2_model, n_ctx=64)
    slot = engine.add_sequence()
    engine.prefill(slot, [1, 2, 3])
    engine.step([5], [slot], [3], [0], "decode")  # binds the step's calls
    n_ops, cached = stub_bound_kernels(engine, "decode")
    benchmark.extra_info["ops_per_step"] = n_ops
    benchmark.pedantic(engine.step, args=([5], [slot], [4], [0], "decode"), rounds=50, warmup_rounds=2)
    assert n_ops > 400 and len(cached) == n_ops


def test_prefill_step_overhead(benchmark, smollm2_model):
    """A 512-token prefill step replayed (the shape was seen before), kernels stubbed."""
    engine = Engine(smollm2_model, n_ctx=PREFILL_TOKENS + 1)
    slot = engine.add_sequence()
    n = PREFILL_TOKENS
    args = ([1 + i % 1000 for i in range(n)], [slot] * n, range(n), [n - 1], "prefill")
    engine.step(*args)  # binds the step's calls
    n_ops, cached = stub_bound_kernels(engine, "prefill")
    benchmark.extra_info["ops_per_step"] = n_ops
    benchmark.pedantic(engine.step, args=args, rounds=20, warmup_rounds=2)
    assert n_ops > 400 and len(cached) == n_ops
