"""The engine's own cost per step: every kernel swapped for one returning a cached result, so what is timed is
placement replay, input writes and the Python between ops (docs/PERF.md)."""

from __future__ import annotations

import pytest

from rocmforge_core.engine import Engine, Model
from rocmforge_core.engine.forward import Call

PREFILL_TOKENS = 512


def stub_recorded_kernels(engine, key):
    """Swap the kernels of the step recorded under ``key`` for ones returning their first result."""
    programs = engine.forward._programs
    cached = {}

    def no_op(call):
        def fn(*args, **params):
            if call.site not in cached:
                cached[call.site] = call.fn(*args, **params)
            return cached[call.site]
        return fn
    programs[key] = [Call(c.site, no_op(c), c.backend, c.weights) for c in programs[key]]
    return len(programs[key]), cached


@pytest.fixture(scope="module")
def smollm2_model(smollm2_path):
    return Model(smollm2_path, backend="reference")


def test_decode_step_overhead(benchmark, smollm2_model):
    engine = Engine(smollm2_model, n_ctx=64)
    slot = engine.add_sequence()
    engine.prefill(slot, [1, 2, 3])
    engine.step([5], [slot], [3], [0], "decode")  # records the step's calls
    n_ops, cached = stub_recorded_kernels(engine, ("decode", 1, 1))
    benchmark.extra_info["ops_per_step"] = n_ops
    benchmark.pedantic(engine.step, args=([5], [slot], [4], [0], "decode"), rounds=50, warmup_rounds=2)
    assert n_ops > 400 and len(cached) == n_ops


def test_prefill_step_overhead(benchmark, smollm2_model):
    """A 512-token prefill step replayed (the shape was seen before), kernels stubbed."""
    engine = Engine(smollm2_model, n_ctx=PREFILL_TOKENS + 1)
    slot = engine.add_sequence()
    n = PREFILL_TOKENS
    args = ([1 + i % 1000 for i in range(n)], [slot] * n, range(n), [n - 1], "prefill")
    engine.step(*args)  # records the step's calls
    n_ops, cached = stub_recorded_kernels(engine, ("prefill", n, 1))
    benchmark.extra_info["ops_per_step"] = n_ops
    benchmark.pedantic(engine.step, args=args, rounds=20, warmup_rounds=2)
    assert n_ops > 400 and len(cached) == n_ops
