"""The continuous batcher driven directly (no HTTP), on a real engine: joining and leaving at every step,
chunked prefill beside running decodes, outputs equal to ``Engine.generate``, admission and freeing."""

from __future__ import annotations

import threading
import time

import pytest

from rocmforge_core.engine import Engine, SamplingParams
from rocmforge_core.serve.batcher import Batcher, Sequence
from rocmforge_core.serve.errors import APIError

GREEDY = SamplingParams(temperature=0, frequency_penalty=1.0)


class Log:
    """Events of every sequence, in the order the engine thread sent them."""

    def __init__(self):
        self.events: list[tuple[int, str, object]] = []
        self.done = {}
        self.cond = threading.Condition()

    def sink(self, name):
        def put(event):
            with self.cond:
                self.events.append((name, *event))
                if event[0] in ("done", "error"):
                    self.done[name] = event
                self.cond.notify_all()
        return put

    def wait(self, predicate, timeout=60):
        """Until ``predicate(self)`` holds (polled: it may read state that no event announces)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self):
                assert time.monotonic() < deadline, self.events[-5:]
                self.cond.wait(0.005)


def run_batcher(model, **kwargs):
    engine = Engine(model, max_seqs=kwargs.pop("max_seqs", 4), n_ctx=kwargs.pop("n_ctx", 256),
                    kv_tokens=kwargs.pop("kv_tokens", None), prefill_chunk=kwargs.pop("prefill_chunk", 256))
    batcher = Batcher(engine, **kwargs)
    batcher.start()
    return engine, batcher


def test_batched_outputs_equal_generate_alone(model):
    tok = model.tokenizer
    prompts = [tok.encode(f"{i} hello the model", add_special=True) for i in range(6)] + [[9] * 70]
    engine, batcher = run_batcher(model, max_seqs=4, prefill_chunk=24)
    try:
        alone = [engine.generate(p, max_tokens=12, sampling=GREEDY).ids for p in prompts]
        log = Log()
        seqs = [Sequence(p, 12, GREEDY, log.sink(i)) for i, p in enumerate(prompts)]
        for s in seqs:
            batcher.submit(s)  # 7 sequences, 4 slots: later ones join as earlier ones leave
        log.wait(lambda lg: len(lg.done) == len(seqs))
        assert [s.ids for s in seqs] == alone
        assert all(s.finish_reason == "length" for s in seqs)
        assert engine.cache.blocks_in_use() == 0
    finally:
        batcher.stop()


def test_long_prompt_is_prefilled_in_chunks_beside_a_running_stream(model):
    tok = model.tokenizer
    engine, batcher = run_batcher(model, max_seqs=2, prefill_chunk=16)
    try:
        log = Log()
        runner = Sequence(tok.encode("hello", add_special=True), 200, GREEDY, log.sink("a"), decoder=tok.stream())
        batcher.submit(runner)
        log.wait(lambda lg: len(runner.ids) >= 2)
        at_submit = len(runner.ids)
        at_first_token = []
        late_sink = log.sink("b")

        def late_events(event):  # runs in the engine thread, right after the late prompt's last chunk
            at_first_token.append(len(runner.ids))
            late_sink(event)

        late = Sequence([7] * 160, 1, GREEDY, late_events)  # 10 chunks of 16 tokens
        batcher.submit(late)
        log.wait(lambda lg: "b" in lg.done)
        assert len(late.ids) == 1 and "a" not in log.done
        # the running stream got a token at every step while the 10 chunks were prefilled
        assert at_first_token[0] - at_submit >= 9, (at_submit, at_first_token)
        batcher.cancel(runner)
        log.wait(lambda lg: "a" in lg.done)
        assert engine.cache.blocks_in_use() == 0
    finally:
        batcher.stop()


def test_cancel_frees_waiting_and_running_sequences(model):
    engine, batcher = run_batcher(model, max_seqs=1, prefill_chunk=64)
    try:
        log = Log()
        first = Sequence([5, 6, 7], 240, GREEDY, log.sink("first"))
        queued = Sequence([5, 6, 8], 240, GREEDY, log.sink("queued"))
        batcher.submit(first)
        batcher.submit(queued)
        log.wait(lambda lg: len(first.ids) >= 2)
        assert batcher.stats()["waiting"] == 1  # one slot: the second waits
        batcher.cancel(queued)
        assert queued.finish_reason == "cancelled" and batcher.stats()["waiting"] == 0
        batcher.cancel(first)
        log.wait(lambda lg: "first" in lg.done)
        assert log.done["first"] == ("done", "cancelled") and len(first.ids) < 240
        s = batcher.stats()
        assert engine.cache.blocks_in_use() == 0 and (s["waiting"], s["running"]) == (0, 0)
    finally:
        batcher.stop()


def test_queue_bound_and_requests_that_never_fit(model):
    engine, batcher = run_batcher(model, max_seqs=1, n_ctx=64, max_queue=1)
    try:
        log = Log()
        running = Sequence([5] * 4, 50, GREEDY, log.sink("r"))
        batcher.submit(running)
        log.wait(lambda lg: len(running.ids) >= 1)
        batcher.submit(Sequence([5] * 4, 50, GREEDY, log.sink("w")))
        with pytest.raises(APIError) as info:
            batcher.submit(Sequence([5] * 4, 50, GREEDY, log.sink("x")))
        assert info.value.status == 503
        with pytest.raises(APIError) as info:  # 4 blocks of 16 hold 64 tokens; this asks 100
            batcher.submit(Sequence([5] * 4, 96, GREEDY, log.sink("y")))
        assert info.value.status == 400 and "lower max_tokens" in str(info.value)
        log.wait(lambda lg: {"r", "w"} <= set(lg.done))
        assert engine.cache.blocks_in_use() == 0
    finally:
        batcher.stop()


def test_a_failing_step_fails_its_sequences_not_the_server(model, monkeypatch):
    engine, batcher = run_batcher(model, max_seqs=2)
    try:
        log = Log()
        real_step = engine.step
        calls = {"n": 0}

        def flaky(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("injected kernel failure")
            return real_step(*args, **kwargs)

        monkeypatch.setattr(engine, "step", flaky)
        victim = Sequence([5, 6], 20, GREEDY, log.sink("v"))
        batcher.submit(victim)
        log.wait(lambda lg: "v" in lg.done)
        assert log.done["v"][0] == "error" and log.done["v"][1].status == 500
        after = Sequence([5, 6], 5, GREEDY, log.sink("after"))
        batcher.submit(after)
        log.wait(lambda lg: "after" in lg.done)
        assert log.done["after"] == ("done", "length") and len(after.ids) == 5
        assert engine.cache.blocks_in_use() == 0
    finally:
        batcher.stop()


def test_prefill_steps_come_in_few_shapes(model, monkeypatch):
    """Prompts of 40 different lengths, several at once: every prefill step has a power-of-two number of tokens
    and of logits rows, so the planner sees a handful of shapes, not one per prompt length."""
    engine, batcher = run_batcher(model, max_seqs=4, prefill_chunk=64)
    try:
        shapes = []
        real_step = engine.step

        def recording(tokens, slots, positions, out_rows, phase, sampling=None):
            if phase == "prefill":
                shapes.append((len(tokens), len(out_rows)))
            return real_step(tokens, slots, positions, out_rows, phase, sampling)

        monkeypatch.setattr(engine, "step", recording)
        log = Log()
        seqs = [Sequence([3 + n % 50] * n, 2, GREEDY, log.sink(n)) for n in range(1, 41)]
        alone = [engine.generate(s.prompt_ids, max_tokens=2, sampling=GREEDY).ids for s in seqs]
        shapes.clear()
        for s in seqs:
            batcher.submit(s)
        log.wait(lambda lg: len(lg.done) == len(seqs))
        assert [s.ids for s in seqs] == alone
        assert {m for m, _ in shapes} <= {1, 2, 4, 8, 16, 32, 64}
        assert {n for _, n in shapes} <= {1, 2, 4}
    finally:
        batcher.stop()


def test_preemption_by_recompute_keeps_every_answer(model, monkeypatch):
    """4 slots but KV room for 64 tokens (4 blocks): all four prompts are admitted, and as they grow the youngest
    running sequences are preempted and later recomputed. Each answer (tokens, streamed text, greedy and seeded)
    still equals the sequence run alone, and nothing is left in the cache."""
    tok = model.tokenizer
    engine, batcher = run_batcher(model, max_seqs=4, kv_tokens=64)
    try:
        batches = []
        real_step = engine.step

        def recording(tokens, slots, positions, out_rows, phase, sampling=None):
            if phase == "decode":
                batches.append(len(tokens))
            return real_step(tokens, slots, positions, out_rows, phase, sampling)

        monkeypatch.setattr(engine, "step", recording)
        log = Log()
        samplings = [GREEDY, SamplingParams(temperature=0.9, seed=11)] * 3
        prompts = [tok.encode(f"{i} hello", add_special=True) for i in range(len(samplings))]
        alone = [engine.generate(p, max_tokens=28, sampling=s, decoder=tok.stream())
                 for p, s in zip(prompts, samplings)]
        batches.clear()
        seqs = [Sequence(p, 28, s, log.sink(i), decoder=tok.stream())
                for i, (p, s) in enumerate(zip(prompts, samplings))]
        for s in seqs:
            batcher.submit(s)
        log.wait(lambda lg: len(lg.done) == len(seqs))
        assert [s.ids for s in seqs] == [g.ids for g in alone]
        streamed = ["".join(e[2] for e in log.events if e[0] == i and e[1] == "text") for i in range(len(seqs))]
        assert streamed == [g.text for g in alone]
        assert batcher.stats()["preemptions"] > 0 and max(batches) > 2
        assert any(s.preemptions for s in seqs)
        assert engine.cache.blocks_in_use() == 0
    finally:
        batcher.stop()


def test_prefix_cache_hit_gives_the_same_answer(model):
    """A prompt sharing 3 full blocks with an earlier one computes only the rest; its answer equals the one an
    engine without a prefix cache gives, and the cached blocks are shared while both run."""
    tok = model.tokenizer
    shared = tok.encode("the model " * 30, add_special=True)[:48]
    prompts = [shared + tok.encode(" hello there", add_special=False), shared + tok.encode(" world", add_special=False)]
    fresh = Engine(model, max_seqs=1, n_ctx=256, prefix_cache=False)
    expected = [fresh.generate(p, max_tokens=10, sampling=GREEDY).ids for p in prompts]
    engine, batcher = run_batcher(model, max_seqs=2)
    try:
        log = Log()
        first = Sequence(prompts[0], 40, GREEDY, log.sink("a"))
        batcher.submit(first)
        log.wait(lambda lg: len(first.ids) >= 1)
        used = engine.cache.blocks_in_use()
        second = Sequence(prompts[1], 10, GREEDY, log.sink("b"))
        batcher.submit(second)
        log.wait(lambda lg: "b" in lg.done)
        assert second.cached_tokens == 48 and first.cached_tokens == 0
        assert first.ids[:10] == expected[0] and second.ids == expected[1]
        log.wait(lambda lg: "a" in lg.done)
        stats = batcher.stats()
        assert stats["prefix_cache_hits"] == 48
        assert stats["prefix_cache_queries"] == len(prompts[0]) + len(prompts[1])
        assert used >= 4 and engine.cache.blocks_in_use() == 0 and engine.cache.allocator.n_cached > 0
        again = Sequence(prompts[1], 10, GREEDY, log.sink("c"))  # its own blocks were cached when it ended
        batcher.submit(again)
        log.wait(lambda lg: "c" in lg.done)
        assert again.ids == expected[1] and again.cached_tokens == (len(prompts[1]) - 1) // 16 * 16
    finally:
        batcher.stop()
