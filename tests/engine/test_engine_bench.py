"""The engine's own cost per decode step: every kernel swapped for one returning a cached result, so what is
timed is placement replay, input writes and the Python between ops (docs/PERF.md)."""

from __future__ import annotations

from rocmforge_core.engine import Engine, Model
from rocmforge_core.engine.forward import Call


def test_decode_step_overhead(benchmark, smollm2_path):
    model = Model(smollm2_path, backend="reference")
    engine = Engine(model, n_ctx=64)
    slot = engine.add_sequence()
    engine.prefill(slot, [1, 2, 3])
    engine.step([5], [slot], [3], [0], "decode")  # records the step's calls
    programs = engine.forward._programs
    cached = {}

    def no_op(call):
        def fn(*args, **params):
            if call.site not in cached:
                cached[call.site] = call.fn(*args, **params)
            return cached[call.site]
        return fn
    for key, calls in programs.items():
        programs[key] = [Call(c.site, no_op(c), c.backend, c.weights) for c in calls]
    n_ops = len(next(iter(programs.values())))
    benchmark.extra_info["ops_per_step"] = n_ops
    benchmark.pedantic(engine.step, args=([5], [slot], [4], [0], "decode"), rounds=50, warmup_rounds=2)
    assert n_ops > 400 and len(cached) == n_ops
