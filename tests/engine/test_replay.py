"""Bind and replay of every step shape: a prefill step of a shape seen before replays the calls bound on the
first one (no signatures, no planner), gives the same logits bit for bit, still falls back when a kernel fails
inside the replay, and only the most recently used shapes are kept."""

from __future__ import annotations

import numpy as np
import pytest

from .boxed_backend import BoxedBackend, registry_with
from rocmforge_core.engine import Engine, Model

PROMPT = [5, 17, 3, 60, 2, 2, 9]


def prefill(engine, ids, *, all_logits=True):
    slot = engine.add_sequence()
    try:
        return engine.logits_to_host(engine.prefill(slot, ids, all_logits=all_logits).logits)
    finally:
        engine.free_sequence(slot)


def count_choices(model):
    """Counts the planner's lookups: a replayed step makes none."""
    asked = []
    choose = model.planner.choose

    def counted(*args, **kwargs):
        asked.append(args[0])
        return choose(*args, **kwargs)
    model.planner.choose = counted
    return asked


def spy_kernel(model, site, phase, behaviour):
    """Replace the kernel chosen for ``site`` in ``phase`` with ``behaviour(original_fn)``."""
    for choice in model.plan.by_signature.values():
        if choice.site == site and choice.phase == phase:
            k = choice.kernel
            choice.kernel = type(k)(k.op, k.backend, "spy", behaviour(k.fn))


@pytest.mark.parametrize("backend", ["reference", "boxed-half"])
def test_a_replayed_prefill_gives_the_logits_of_an_unreplayed_one_bit_for_bit(tiny_llama, backend):
    """Replay on a host backend, and on a device-like backend running half the ops (copies between backends)."""
    def load():
        if backend == "reference":
            return Model(tiny_llama, backend="reference")
        boxed = BoxedBackend(ops_supported=("embedding", "matmul"))
        return Model(tiny_llama, backend="boxed", registry=registry_with(boxed))
    model = load()
    engine = Engine(model, n_ctx=32, max_seqs=2)
    first = prefill(engine, PROMPT)  # eager: places and binds
    assert [k[:3] for k in engine._shapes] == [("prefill", len(PROMPT), len(PROMPT))]
    asked = count_choices(model)
    copies = engine.executor.copies
    second = prefill(engine, PROMPT)
    assert asked == []  # replayed: no placement lookups
    np.testing.assert_array_equal(second, first)
    assert engine.executor.copies - copies == (copies if backend != "reference" else 0)  # same copies per step
    # An engine that never replays (fresh model, first step of its shape) agrees bit for bit too.
    np.testing.assert_array_equal(prefill(Engine(load(), n_ctx=32), PROMPT), first)
    # A mixed batch of two sequences replays as well and equals each sequence alone.
    a, b = engine.add_sequence(), engine.add_sequence()
    tokens, slots, pos = PROMPT[:4] + PROMPT[:3], [a] * 4 + [b] * 3, [0, 1, 2, 3, 0, 1, 2]
    mixed = [engine.logits_to_host(engine.step(tokens, slots, pos, [3, 6], "prefill").logits) for _ in range(2)]
    assert len(asked) > 0  # the first mixed step was a new shape
    np.testing.assert_array_equal(mixed[0], mixed[1])
    np.testing.assert_allclose(mixed[0], first[[3, 2]], rtol=1e-6, atol=1e-6)


def test_a_kernel_failing_inside_a_replayed_prefill_falls_back_and_the_output_is_unchanged(tiny_llama):
    model = Model(tiny_llama, backend="reference")
    engine = Engine(model, n_ctx=32)
    expected = prefill(engine, PROMPT)
    failing, runs = [], []

    def flaky(fn):
        def run(*args, **params):
            runs.append(1)
            if failing:
                raise RuntimeError("kernel fault")
            return fn(*args, **params)
        return run
    spy_kernel(model, "blk.0.ffn_up", "prefill", flaky)
    engine = Engine(model, n_ctx=32)  # a new cache: steps are bound afresh, with the spy
    np.testing.assert_array_equal(prefill(engine, PROMPT), expected)
    assert len(runs) == 1
    failing.append(True)
    replayed = prefill(engine, PROMPT)
    assert len(runs) == 2  # failed once in the replay, then the next candidate ran
    assert model.plan.fallbacks == 1 and model.planner.events[0]["kernel"] == "spy"
    assert model.planner.events[0]["phase"] == "prefill"
    np.testing.assert_allclose(replayed, expected, rtol=1e-5, atol=1e-5)
    assert (replayed.argmax(-1) == expected.argmax(-1)).all()
    # The plan changed: the step is bound again with the replacement, then replayed without the failed kernel.
    again = [prefill(engine, PROMPT) for _ in range(2)]
    assert len(runs) == 2 and model.plan.fallbacks == 1
    np.testing.assert_array_equal(again[0], replayed)
    np.testing.assert_array_equal(again[1], replayed)


def test_recorded_step_shapes_are_bounded_and_least_recently_used_go_first(tiny_llama):
    model = Model(tiny_llama, backend="reference")
    engine = Engine(model, n_ctx=32)
    engine.max_steps = 3
    outputs = {n: prefill(engine, PROMPT[:n], all_logits=False) for n in range(1, 7)}
    assert [k[:3] for k in engine._shapes] == [("prefill", n, 1) for n in (4, 5, 6)]
    asked = count_choices(model)
    np.testing.assert_array_equal(prefill(engine, PROMPT[:4], all_logits=False), outputs[4])  # kept: replayed
    assert asked == []
    np.testing.assert_array_equal(prefill(engine, PROMPT[:1], all_logits=False), outputs[1])  # evicted: eager
    assert asked and [k[:3] for k in engine._shapes] == [("prefill", n, 1) for n in (6, 4, 1)]
    # The default bound holds for a server that meets every prompt length.
    engine = Engine(model, n_ctx=64)
    for n in range(1, 50):
        prefill(engine, [1 + i % 90 for i in range(n)], all_logits=False)
    assert len(engine._shapes) == engine.max_steps < 49


def test_decode_steps_share_one_shape_with_and_without_penalties_as_histories_grow(model):
    """The sampler's history width comes from the rows' penalty windows, not from how much history they hold yet,
    so a penalized stream keeps replaying one decode shape, and unpenalized rows share it (a width per history
    length made a new shape, traced and captured, each time a history crossed a power of two)."""
    from rocmforge_core.engine.sampling import RowSampling, SamplingParams
    engine = Engine(model, n_ctx=64, max_seqs=2)
    slots = [engine.add_sequence(), engine.add_sequence()]
    penalized = SamplingParams(temperature=0.0, frequency_penalty=1.0)
    history = []
    for pos in range(20):
        rows = [RowSampling(penalized, pos, tuple(history)), RowSampling()]
        token = engine.step([1 + pos, 2], slots, [pos, pos], range(2), "decode", rows).tokens[0]
        history.append(token)
    engine.step([3, 4], slots, [20, 20], range(2), "decode")  # no penalties at all
    assert [k[:5] for k in engine._shapes] == [("decode", 2, 2, 1, 64)]
    wide = SamplingParams(temperature=0.0, repeat_penalty=1.1, penalty_last_n=100)
    engine.step([5, 6], slots, [21, 21], range(2), "decode", [RowSampling(wide, 0, tuple(history))] * 2)
    assert len(engine._shapes) == 1  # a window past the context is as wide as the context, here 64
    for s in slots:
        engine.free_sequence(s)


def test_a_step_is_checked_when_read_or_before_the_next_step_writes_its_inputs(model):
    """Engine.step returns once the step is queued (a device backend's replay runs on while the caller works):
    its logits are checked for non-finite values when first read, or by the next step before that one writes
    the inputs the first would be run again on."""
    engine = Engine(model, n_ctx=32)
    checked = []
    finite = engine.executor._finite
    engine.executor._finite = lambda tensor: checked.append(1) or finite(tensor)
    slot = engine.add_sequence()
    first = engine.step([5], [slot], [0], [0], "decode")
    assert checked == []
    second = engine.step([6], [slot], [1], [0], "decode")
    assert checked == [1]  # the first, before the second's inputs
    token = second.tokens[0]
    assert checked == [1, 1] and second.tokens == [token]  # read once, checked once
    assert first.tokens  # still readable: the reference backend keeps each step's values
    engine.free_sequence(slot)
