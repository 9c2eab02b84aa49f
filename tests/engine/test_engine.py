"""The engine on a tiny llama (reference backend): batched steps, generation, sampling, limits, streaming."""

from __future__ import annotations

import numpy as np
import pytest

from rocmforge_core.engine import ContextLengthError, Engine, RowSampling, SamplingParams
from rocmforge_core.errors import RocmforgeError
from rocmforge_core.ops.sample import sample_row
from rocmforge_core.program import BLOCK_TABLES, STEP_INPUTS


class Digits:
    """A stand-in for the tokenizer's streaming decoder: token t reads as "<t>"."""
    def add(self, token):
        return f"<{token}>"

    def flush(self):
        return ""


def test_a_batch_of_sequences_equals_each_sequence_alone(model):
    engine = Engine(model, n_ctx=32, max_seqs=3, block_size=4)
    prompts = [[5, 6, 7, 8, 9], [1, 2], [40, 41, 42, 43, 44, 45, 46]]
    slots = [engine.add_sequence() for _ in prompts]
    alone = []
    for slot, ids in zip(slots, prompts):
        alone.append(engine.logits_to_host(engine.prefill(slot, ids, all_logits=True).logits))
    # one mixed prefill batch of all three prompts, then one decode step for all three
    engine2 = Engine(model, n_ctx=32, max_seqs=3, block_size=4)
    slots2 = [engine2.add_sequence() for _ in prompts]
    tokens = sum(prompts, [])
    seq = sum(([s] * len(p) for s, p in zip(slots2, prompts)), [])
    pos = sum((list(range(len(p))) for p in prompts), [])
    mixed = engine2.logits_to_host(engine2.step(tokens, seq, pos, range(len(tokens)), "prefill").logits)
    np.testing.assert_allclose(mixed, np.concatenate(alone), atol=1e-5)
    nxt = [11, 12, 13]
    both = engine2.logits_to_host(engine2.step(nxt, slots2, [len(p) for p in prompts], [0, 1, 2], "decode").logits)
    for i, (slot, p) in enumerate(zip(slots, prompts)):
        one = engine.logits_to_host(engine.step([nxt[i]], [slot], [len(p)], [0], "decode").logits)
        np.testing.assert_allclose(both[i], one[0], atol=1e-5)


def test_greedy_generation_is_the_argmax_chain(model):
    engine = Engine(model, n_ctx=32)
    gen = engine.generate([3, 4, 5], max_tokens=6, sampling=SamplingParams(temperature=0))
    assert len(gen.ids) == 6 and gen.finish_reason == "length"
    slot = engine.add_sequence()
    ids = [3, 4, 5]
    for _ in range(6):
        logits = engine.logits_to_host(engine.prefill(slot, ids).logits)
        ids.append(int(np.argmax(logits[0])))
    assert gen.ids == ids[3:]
    s = gen.stats
    assert s.prompt_tokens == 3 and s.generated_tokens == 6 and s.decode_tokens_per_s > 0 and s.backend == "reference"


def test_seeded_sampling_is_reproducible(model):
    engine = Engine(model, n_ctx=32)
    params = SamplingParams(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=7)
    a = engine.generate([1, 2], max_tokens=8, sampling=params)
    b = engine.generate([1, 2], max_tokens=8, sampling=params)
    c = engine.generate([1, 2], max_tokens=8, sampling=SamplingParams(temperature=1.5, top_k=0, top_p=1.0,
                                                                       min_p=0.0, seed=8))
    assert a.ids == b.ids and a.stats.seed == 7
    assert a.ids != c.ids


def test_end_of_generation_token_stops(model):
    engine = Engine(model, n_ctx=32)
    first = engine.generate([9, 8], max_tokens=3, sampling=SamplingParams(temperature=0)).ids
    gen = engine.generate([9, 8], max_tokens=3, sampling=SamplingParams(temperature=0), eog_ids=[first[1]])
    assert gen.ids == first[:1] and gen.finish_reason == "eos" and gen.stop_token == first[1]


def test_streaming_and_stop_strings(model):
    engine = Engine(model, n_ctx=32)
    greedy = SamplingParams(temperature=0)
    ids = engine.generate([9, 8], max_tokens=4, sampling=greedy).ids
    pieces = []
    gen = engine.generate([9, 8], max_tokens=4, sampling=greedy, decoder=Digits(), on_text=pieces.append)
    assert "".join(pieces) == gen.text == "".join(f"<{t}>" for t in ids)
    stop = f"<{ids[2]}>"
    gen = engine.generate([9, 8], max_tokens=4, sampling=greedy, decoder=Digits(), stop=[stop])
    assert gen.finish_reason == "stop" and gen.text == "".join(f"<{t}>" for t in ids[:2])


def test_context_limits(model):
    engine = Engine(model, n_ctx=8)
    with pytest.raises(ContextLengthError, match="8"):
        engine.generate(list(range(8)), max_tokens=2)
    with pytest.raises(ContextLengthError, match="empty"):
        engine.generate([], max_tokens=2)
    gen = engine.generate([1, 2, 3, 4, 5], max_tokens=10, sampling=SamplingParams(temperature=0))
    assert gen.finish_reason == "context" and len(gen.ids) == 4  # positions 5, 6, 7 decoded, then no room
    with pytest.raises(RocmforgeError, match="token id 96 is outside"):
        engine.generate([1, 96], max_tokens=2)
    with pytest.raises(RocmforgeError, match="max_tokens"):
        engine.generate([1], max_tokens=-1)
    with pytest.raises(ContextLengthError, match="at least 2"):
        Engine(model, n_ctx=1)
    with pytest.raises(ContextLengthError, match="trained"):
        Engine(model, n_ctx=model.config.context_length + 1)
    assert engine.cache.blocks_in_use() == 0  # finished sequences give their blocks back


def test_each_row_of_a_batch_is_sampled_with_its_own_parameters(model):
    engine = Engine(model, n_ctx=32, max_seqs=2)
    a, b = engine.add_sequence(), engine.add_sequence()
    args = ([1, 2, 3, 4, 5], [a, a, b, b, b], [0, 1, 0, 1, 2], [1, 4], "prefill")
    greedy = engine.step(*args)
    host = engine.logits_to_host(greedy.logits)
    assert greedy.tokens == [int(np.argmax(h)) for h in host]
    # Row 1 sampled hot with a seed, row 0 greedy: row 1 draws as it would alone; row 0 stays the argmax.
    hot = SamplingParams(temperature=2.0, top_k=0, top_p=1.0, min_p=0.0, seed=9)
    mixed = engine.step(*args, [None, RowSampling(hot, 3)])
    alone = engine.step(*args, [RowSampling(hot, 3), RowSampling(hot, 3)])
    assert mixed.tokens[0] == greedy.tokens[0] and mixed.tokens[1] == alone.tokens[1]
    expected = sample_row(host[1], [], **{**hot.op_params(), "seed": 9, "step": 3})
    assert mixed.tokens[1] == expected


def test_load_progress_bar_draws_only_on_a_terminal_after_a_moment():
    import io
    from rocmforge_core.cli.run import LoadProgress

    class Tty(io.StringIO):
        def isatty(self):
            return True
    tty = Tty()
    bar = LoadProgress("m.gguf", tty)
    bar(1, 2)
    assert tty.getvalue() == ""  # too early: loading was quick so far
    bar.start -= LoadProgress.DELAY
    bar(1, 2)
    bar.close()
    assert "loading m.gguf [" in tty.getvalue() and " 50%" in tty.getvalue()
    quiet = io.StringIO()
    bar = LoadProgress("m.gguf", quiet)
    bar.start -= LoadProgress.DELAY
    bar(1, 2)
    assert quiet.getvalue() == ""


def test_malformed_steps_are_refused(model):
    engine = Engine(model, n_ctx=32, max_seqs=2)
    slot = engine.add_sequence()
    with pytest.raises(ValueError, match="one entry per token"):
        engine.step([1, 2], [slot], [0, 1], [1], "prefill")
    with pytest.raises(ValueError, match="one output row per token"):
        engine.step([1], [slot], [0], [], "decode")


def test_f16_kv_cache_stays_close_to_f32(model):
    ids = [3, 14, 15, 92, 65, 35, 89, 79]
    logits = {}
    for dtype in ("f32", "f16"):
        engine = Engine(model, n_ctx=32, kv_dtype=dtype)
        assert engine.cache.k[0].dtype == {"f32": np.float32, "f16": np.float16}[dtype]
        slot = engine.add_sequence()
        rows = [engine.logits_to_host(engine.prefill(slot, ids[:4]).logits)[0]]
        for pos in range(4, len(ids)):
            rows.append(engine.logits_to_host(engine.step([ids[pos]], [slot], [pos], [0], "decode").logits)[0])
        logits[dtype] = np.stack(rows)
    err = np.abs(logits["f16"] - logits["f32"]).max()
    assert 0 < err < 1e-2 * np.abs(logits["f32"]).max()



def test_decode_steps_rewrite_only_the_inputs_that_change(model):
    """A decoding sequence keeps its slot and output row: after the first step only its token and position are
    written; a step of another sequence writes its slot too. The logits stay those of a fresh engine."""
    engine = Engine(model, n_ctx=32, max_seqs=2, block_size=4)
    be = model.backend
    written = []
    write = be.write
    be.write = lambda tensor, array: (written[-1].append(tensor), write(tensor, array))[1]
    steps = [([5], 0, 0), ([6], 0, 1), ([7], 0, 2), ([9], 1, 0), ([8], 0, 3)]
    try:
        slots = [engine.add_sequence(), engine.add_sequence()]
        for tokens, seq, pos in steps:
            written.append([])
            logits = engine.logits_to_host(engine.step(tokens, [slots[seq]], [pos], [0], "decode").logits)
    finally:
        del be.write
    (shape,) = engine._shapes.values()
    names = {id(t): STEP_INPUTS[key] for key, t in shape.inputs.tensors.items() if key != BLOCK_TABLES}
    got = [sorted(names[id(t)] for t in step if id(t) in names) for step in written]
    sampler = ["allowed-token mask", "logit bias ids", "logit bias values", "sampling controls", "sampling history",
               "sampling parameters"]
    assert got == [sorted(["output rows", "positions", "sequence ids", "token ids"] + sampler),
                   ["positions", "token ids"], ["positions", "token ids"],
                   ["positions", "sequence ids", "token ids"], ["positions", "sequence ids", "token ids"]]
    fresh = Engine(model, n_ctx=32, max_seqs=2, block_size=4)
    s = fresh.add_sequence()
    for pos, tok in enumerate([5, 6, 7, 8]):
        want = fresh.logits_to_host(fresh.step([tok], [s], [pos], [0], "decode").logits)
    np.testing.assert_array_equal(logits, want)
