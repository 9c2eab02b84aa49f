"""The hip backend on a real GPU (`pytest -m gpu`, run on the device machine by scripts/gpu-check.sh): every kernel
against the ops' numpy references through the conformance kit, then model-sized shapes, long contexts, sampling
on a full vocabulary, graph capture and replay, and out-of-memory reporting."""

from __future__ import annotations

import numpy as np
import pytest

from rocmforge_core import ops
from rocmforge_core.conformance import FAIL, SKIP, run_conformance
from rocmforge_core.errors import OutOfMemoryError
from rocmforge_core.ops import nmse
from rocmforge_core.registry import get_registry

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def hip():
    backend = get_registry().backend("hip")
    verdict = backend.available()
    if not verdict:
        pytest.skip(f"hip backend unavailable: {verdict.reason}")
    return backend


def kernel(op):
    return next(k for k in get_registry().kernels if k.backend == "hip" and k.op == op)


def test_device_properties(hip):
    info = hip.devices()[0]
    assert info.wave_size in (32, 64) and info.compute_units > 0 and info.memory_bytes > 1 << 30
    assert info.arch.startswith(("sm_", "gfx"))


@pytest.mark.parametrize("seed", [0, 1])
def test_conformance_kit(hip, seed):
    results = run_conformance(get_registry(), backend="hip", seed=seed)
    failed = [f"{r.name}: {r.message}" for r in results if r.status == FAIL]
    passed = [r for r in results if r.passed]
    skipped = {r.name: r.message for r in results if r.status == SKIP}
    print(f"\nconformance seed {seed}: {len(passed)} passed, {len(failed)} failed, {len(skipped)} skipped")
    for name, why in skipped.items():
        print(f"  skip {name}: {why}")
    assert not failed, "\n".join(failed)
    assert len(passed) >= 90  # every op, every format with hip device code


def _upload(hip, fmt_name, rng, rows, cols):
    fmt = get_registry().format(fmt_name)
    w = fmt.random_weight(rng, "w", (rows, cols))
    return w, hip.upload_weight(w)


@pytest.mark.parametrize("fmt", ["F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K",
                                 "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS", "MXFP4"])
@pytest.mark.parametrize("m", [1, 3, 77])
def test_matmul_model_shapes(hip, fmt, m):
    rng = np.random.default_rng(hash((fmt, m)) % 2**32)
    w, dw = _upload(hip, fmt, rng, 1000, 2048)  # 1000 rows: not a multiple of any tile
    x = rng.standard_normal((m, 2048)).astype(np.float32)
    got = hip.to_host(kernel("matmul").fn(hip.from_host(x), dw))
    want = ops.reference("matmul")(x, w)
    # Quantized weights may take the 8-bit-activation decode path or the f16 BLAS path: the op allows 5e-4.
    assert nmse(got, want) < (1e-9 if fmt in ("F16", "BF16") else 1e-4)


@pytest.mark.parametrize("fmt", ["Q4_0", "Q8_0", "Q4_K", "Q6_K", "Q5_K"])
# Splits of 4 and 8 groups over the units; rf_mmv's 8 to 32 lanes a row, and a last run of units cut short (14336).
@pytest.mark.parametrize("n, k", [(1000, 2048), (256, 4096), (40, 1024), (48, 14336)])
def test_decode_products_are_batch_invariant(hip, fmt, n, k):
    """Row j of a decode product is bit for bit the same whether x has 1 row or up to 64 (every tile instance of
    rf_mmq where the target has the integer tile product, the integer-dot kernels elsewhere), and close to the
    reference."""
    rng = np.random.default_rng(hash((fmt, n, k)) % 2**32)
    w, dw = _upload(hip, fmt, rng, n, k)
    x = rng.standard_normal((64, k)).astype(np.float32)
    full = hip.to_host(kernel("matmul").fn(hip.from_host(x), dw))
    assert nmse(full, ops.reference("matmul")(x, w)) < 1e-4
    for m in (1, 9, 33):
        part = hip.to_host(kernel("matmul").fn(hip.from_host(x[:m].copy()), dw))
        np.testing.assert_array_equal(part, full[:m], err_msg=f"{fmt} m={m}")


def test_embedding_and_dequant_are_exact_on_large_tables(hip):
    rng = np.random.default_rng(5)
    for fmt in ("Q4_K", "Q6_K", "Q8_0"):
        w, dw = _upload(hip, fmt, rng, 3000, 512)
        ids = rng.integers(0, 3000, 33).astype(np.int32)
        got = hip.to_host(kernel("embedding").fn(dw, hip.from_host(ids)))
        np.testing.assert_array_equal(got, ops.reference("embedding")(w, ids))
        np.testing.assert_array_equal(hip.to_host(kernel("dequant").fn(dw)), ops.reference("dequant")(w))


def _attention_case(rng, seqs, hq, hkv, d, bs, f16=False):
    mb = max((c + n + bs - 1) // bs for c, n in seqs)
    nb = mb * len(seqs) + 1
    dt = np.float16 if f16 else np.float32
    kc = rng.standard_normal((nb, bs, hkv, d)).astype(dt)
    vc = rng.standard_normal((nb, bs, hkv, d)).astype(dt)
    tables = (rng.permutation(nb - 1)[: mb * len(seqs)] + 1).reshape(len(seqs), mb).astype(np.int32)
    sid = np.concatenate([np.full(n, i) for i, (c, n) in enumerate(seqs)]).astype(np.int32)
    pos = np.concatenate([np.arange(c, c + n) for c, n in seqs]).astype(np.int32)
    m = len(pos)
    q = rng.standard_normal((m, hq, d)).astype(np.float32)
    k = rng.standard_normal((m, hkv, d)).astype(np.float32)
    v = rng.standard_normal((m, hkv, d)).astype(np.float32)
    return q, k, v, kc, vc, tables, sid, pos


@pytest.mark.parametrize("seqs,window,f16", [
    ([(4000, 1)], 0, False),            # long decode: split along the sequence
    ([(3000, 1), (10, 1)], 1024, True),  # split + window, f16 cache
    ([(0, 300)], 0, False),              # prefill
    ([(100, 200)], 64, True),            # prefill with window on a cached prefix
])
def test_attention_long_and_prefill(hip, seqs, window, f16):
    rng = np.random.default_rng(11)
    q, k, v, kc, vc, tables, sid, pos = _attention_case(rng, seqs, 32, 8, 64, 16, f16)
    dev = [hip.from_host(a) for a in (q, k, v, kc, vc, tables, sid, pos)]
    got = hip.to_host(kernel("attention").fn(*dev, scale=0.125, window=window))
    kc_ref, vc_ref = kc.astype(np.float32), vc.astype(np.float32)
    want = ops.reference("attention")(q, k, v, kc_ref, vc_ref, tables, sid, pos, scale=0.125, window=window)
    tol = 1e-5 if f16 else 1e-9  # the reference keeps f32 copies of k and v, the f16 cache rounds them
    assert nmse(got, want) < tol
    np.testing.assert_allclose(hip.to_host(dev[3]).astype(np.float32), kc_ref.astype(kc.dtype).astype(np.float32))


@pytest.mark.parametrize("params", [
    dict(temperature=0.0),
    dict(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05),
    dict(temperature=1.0, top_k=1024, top_p=1.0, min_p=0.0),
    dict(temperature=0.7, top_k=100, top_p=0.5, min_p=0.0, typical_p=0.8),
    dict(temperature=1.3, top_k=50, top_p=0.9, repeat_penalty=1.2, presence_penalty=0.3, frequency_penalty=0.1),
])
def test_sample_full_vocabulary_matches_reference(hip, params):
    """Twelve rows of a 128k vocabulary in one call, each with its own seed, step and history."""
    rng = np.random.default_rng(3)
    sample = kernel("sample").fn
    spec = ops.module("sample")
    logits = (rng.standard_normal((12, 128256)) * 4).astype(np.float32)
    for row in logits:
        row[rng.integers(0, 128256, 5)] = row.max()  # ties at the top
    rows = [{**spec.DEFAULTS, **params, "seed": trial, "step": trial * 7,
             "history": rng.integers(0, 128256, 64).tolist()} for trial in range(12)]
    args = (logits, *spec.pack(rows, 64), *spec.pack_constraints(rows, 128256, 1))
    candidates = spec.candidates(rows, 128256)
    got = hip.to_host(sample(*(hip.from_host(a) for a in args), candidates=candidates))
    want = ops.reference("sample")(*args, candidates=candidates)
    np.testing.assert_array_equal(got, want)


def test_graph_capture_replays_with_new_inputs(hip):
    rng = np.random.default_rng(7)
    w, dw = _upload(hip, "Q4_0", rng, 512, 1024)
    x_dev = hip.empty((1, 1024), "f32")
    b_dev = hip.empty((512,), "f32")
    out = {}

    def step():
        y = kernel("matmul").fn(x_dev, dw)
        out["y"] = kernel("add").fn(y, b_dev)

    hip.write(x_dev, np.zeros((1, 1024), np.float32))
    hip.write(b_dev, np.zeros(512, np.float32))
    step()  # compiles and loads the kernels before capture
    replay = hip.capture(step)
    for _ in range(3):
        x = rng.standard_normal((1, 1024)).astype(np.float32)
        b = rng.standard_normal(512).astype(np.float32)
        hip.write(x_dev, x)
        hip.write(b_dev, b)
        replay()
        want = ops.reference("matmul")(x, w) + b
        assert nmse(hip.to_host(out["y"]), want) < 1e-4  # Q4_0 decode quantizes x to 8 bits


def test_quantized_activation_is_not_reused_after_a_write(hip):
    rng = np.random.default_rng(9)
    w, dw = _upload(hip, "Q4_K", rng, 300, 1024)
    x_dev = hip.empty((1, 1024), "f32")
    for _ in range(2):  # the second product must see the new x, not the 8-bit copy of the first
        x = rng.standard_normal((1, 1024)).astype(np.float32)
        hip.write(x_dev, x)
        for _ in range(2):  # the repeated product on the same x reuses its 8-bit copy
            got = hip.to_host(kernel("matmul").fn(x_dev, dw))
            assert nmse(got, ops.reference("matmul")(x, w)) < 1e-4


def test_captured_neighbours_share_launches_and_match_eager(hip):
    """While capturing, products of one input become one launch, a residual add joins the product before it and
    the ropes of q and k share a launch; the replay gives what the eager calls give."""
    rng = np.random.default_rng(12)
    (w1, d1), (w2, d2), (w3, d3), (w4, d4) = (_upload(hip, "Q4_K", rng, n, 512) for n in (256, 64, 64, 256))
    x = hip.from_host(rng.standard_normal((1, 512)).astype(np.float32))
    res = hip.from_host(rng.standard_normal((1, 256)).astype(np.float32))
    pos = hip.from_host(np.array([37], np.int32))
    mm, add, rope = kernel("matmul").fn, kernel("add").fn, kernel("rope").fn

    def step():
        q, k, v = mm(x, d1), mm(x, d2), mm(x, d3)
        qr = rope(q.reshape(1, 4, 64), pos, base=1e4, mode="normal")
        kr = rope(k.reshape(1, 1, 64), pos, base=1e4, mode="normal")
        o = mm(x, d4)
        return q, k, v, qr, kr, o, add(res, o)

    eager = [hip.to_host(t) for t in step()]
    launches = []
    real = hip.runtime.launch
    hip.runtime.launch = lambda *a, **kw: (launches.append(a[0]), real(*a, **kw))[1]
    out = {}
    try:
        replay = hip.capture(lambda: out.__setitem__("r", step()))
    finally:
        del hip.runtime.launch
    assert len(launches) == 4  # quantize x; q, k and v in one; both ropes in one; o with the add
    replay()
    for got, want in zip((hip.to_host(t) for t in out["r"]), eager):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    xh = hip.to_host(x)
    for got, w in zip(eager[:3], (w1, w2, w3)):
        assert nmse(got, ops.reference("matmul")(xh, w)) < 1e-4
    assert nmse(eager[6], ops.reference("matmul")(xh, w4) + hip.to_host(res)) < 1e-4


@pytest.mark.parametrize("n", [1, 7, 2048, 128256, (1 << 20) + 3])
def test_all_finite(hip, n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n).astype(np.float32)
    assert hip.all_finite(hip.from_host(x)) and hip.all_finite(hip.from_host(x))  # the block counter resets
    for where in {0, n // 2, n - 1}:
        for bad in (np.nan, np.inf, -np.inf):
            y = x.copy()
            y[where] = bad
            assert not hip.all_finite(hip.from_host(y)), (where, bad)


def test_out_of_memory_is_reported(hip):
    with pytest.raises(OutOfMemoryError, match="no room"):
        hip.empty((1 << 40,), "f32")


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3", "gemma3"])
@pytest.mark.parametrize("dtype", ["F32", "F16"])
def test_whole_model_logits_match_reference(hip, tmp_path, arch, dtype):
    from rocmforge_core.engine import Engine
    from rocmforge_core.engine.model import Model
    from rocmforge_core.models.synthetic import TinyConfig, write_model

    config = TinyConfig(dtype=dtype, sliding_window=8 if arch == "gemma3" else 0, rope_freqs=arch == "llama")
    path = tmp_path / f"{arch}.gguf"
    write_model(path, arch, config, seed=3)
    ids = [int(t) for t in np.random.default_rng(1).integers(0, config.vocab_size, 21)]
    logits = {}
    for backend in ("reference", "hip"):
        model = Model(path, backend=backend)
        engine = Engine(model, n_ctx=64)
        slot = engine.add_sequence()
        rows = [engine.logits_to_host(engine.prefill(slot, ids[:13], all_logits=True).logits)]
        for pos in range(13, len(ids)):  # decode steps: the second and later replay a captured graph on hip
            rows.append(engine.logits_to_host(engine.step([ids[pos]], [slot], [pos], [0], "decode").logits))
        # A prefill of a shape seen before is captured, then replayed: the same logits as the eager one.
        engine.free_sequence(slot)
        for _ in range(2):
            slot = engine.add_sequence()
            again = engine.logits_to_host(engine.prefill(slot, ids[:13], all_logits=True).logits)
            np.testing.assert_allclose(again, rows[0], rtol=0, atol=1e-6)
            engine.free_sequence(slot)
        logits[backend] = np.concatenate(rows)
        model.close()
    assert logits["hip"].shape == (len(ids), config.vocab_size)
    assert nmse(logits["hip"], logits["reference"]) < 1e-8


def engine_logits(path, backend: str, ids: list[int], n_prefill: int, kv_dtype: str = "f32") -> np.ndarray:
    """Logits of every position of ``ids``: the first ``n_prefill`` in one prefill step, the rest decoded one by one
    (on hip the second and later decode steps replay a captured graph)."""
    from rocmforge_core.engine import Engine
    from rocmforge_core.engine.model import Model

    model = Model(path, backend=backend)
    try:
        engine = Engine(model, n_ctx=64, kv_dtype=kv_dtype)
        slot = engine.add_sequence()
        rows = [engine.logits_to_host(engine.prefill(slot, ids[:n_prefill], all_logits=True).logits)]
        for pos in range(n_prefill, len(ids)):
            rows.append(engine.logits_to_host(engine.step([ids[pos]], [slot], [pos], [0], "decode").logits))
        return np.concatenate(rows)
    finally:
        model.close()


# Quantized products on hip round activations to 8 bits (the decode path) or weights to f16 (prefill): per
# product 1e-5 to 1e-4 of NMSE (test_matmul_model_shapes). Through a model of random blocks it grows: without q/k
# norms (llama, qwen2) attention scores of these weights are large, softmax nearly one-hot, and a small change of a
# score moves a whole row; Q8_0's and Q6_K's random blocks hold weights up to 16x those of Q4_0's, the scales being
# drawn from the same range. Measured on the emulator (2026-12-03): position 0 (attention over itself alone)
# 1e-4 to 1e-3 for every type, all 21 positions up to 1.4e-2 (llama-tiny Q8_0); F16 1e-12. A wrong kernel gives
# NMSE near 1, so these bounds still catch one.
SHAPE_TOLERANCE = {"F16": (1e-8, 1e-8), "Q8_0": (3e-3, 5e-2), "Q4_0": (3e-3, 5e-2), "Q4_K_M": (3e-3, 5e-2),
                   "Q6_K": (3e-3, 5e-2)}  # (position 0, all positions)


@pytest.mark.parametrize("shape", ["llama-tiny", "qwen2-tiny", "qwen3-tiny", "gemma3-tiny"])
@pytest.mark.parametrize("qtype", list(SHAPE_TOLERANCE))
def test_bench_shapes_logits_match_reference(hip, tmp_path, shape, qtype):
    """The -tiny twin of every benchmarked shape (rocmforge_core/cli/shapes.py: llama 3 rope factors and an
    untied output, qwen2's q/k/v biases, qwen3's q/k norms with a head size other than d_model / heads, gemma3's
    sliding-window and global layers), written as the benchmarks write them, in every benchmarked type: hip's
    logits over a prefill and decode steps against the reference backend's. 21 positions: past gemma3-tiny's
    window of 8."""
    from rocmforge_core.cli.shapes import write_synthetic

    path = write_synthetic(f"{shape}:{qtype}", tmp_path)
    ids = [int(t) for t in np.random.default_rng(1).integers(0, 1000, 21)]
    want = engine_logits(path, "reference", ids, 13)
    got = engine_logits(path, "hip", ids, 13)
    assert got.shape == want.shape == (21, 1000) and np.isfinite(want).all()
    first, every = nmse(got[0], want[0]), nmse(got, want)
    print(f"\n{shape} {qtype}: nmse position 0 {first:.2e}, all {every:.2e}")
    assert first < SHAPE_TOLERANCE[qtype][0] and every < SHAPE_TOLERANCE[qtype][1]


def test_f16_kv_cache_matches_the_reference_with_one(hip, tmp_path):
    """`rocmforge bench -ctk f16` (as llama-bench's default cache): gemma3-tiny's windowed and global layers over
    an f16 cache on hip against the reference backend with an f16 cache (both round k and v to f16 alike)."""
    from rocmforge_core.cli.shapes import write_synthetic

    path = write_synthetic("gemma3-tiny:F16", tmp_path)
    ids = [int(t) for t in np.random.default_rng(4).integers(0, 1000, 21)]
    want = engine_logits(path, "reference", ids, 13, kv_dtype="f16")
    assert nmse(engine_logits(path, "hip", ids, 13, kv_dtype="f16"), want) < 1e-8


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3", "gemma3"])
@pytest.mark.parametrize("dtype", ["F16", "Q8_0", "Q4_0"])
def test_a_sequence_decoded_in_any_batch_gets_the_logits_it_gets_alone(hip, tmp_path, arch, dtype):
    """Batch invariance: five sequences decoded together (batches of 3 to 5, padded to captured sizes, one
    sequence joining late and one leaving early) give, bit for bit, the logits and greedy tokens each gets decoded
    alone, so batched serving answers as a single stream does, whatever the margins between tokens."""
    from rocmforge_core.engine import Engine
    from rocmforge_core.engine.model import Model
    from rocmforge_core.models.synthetic import TinyConfig, write_model

    config = TinyConfig(dtype=dtype, sliding_window=8 if arch == "gemma3" else 0)
    path = tmp_path / f"{arch}-{dtype}.gguf"
    write_model(path, arch, config, seed=5)
    rng = np.random.default_rng(2)
    prompts = [[int(t) for t in rng.integers(0, config.vocab_size, n)] for n in (3, 9, 5, 14, 6)]
    steps, late, early = 7, 4, 0  # prompt 4 joins after 2 batched steps; prompt 0 stops after 4 steps
    model = Model(path, backend="hip")
    engine = Engine(model, n_ctx=64, max_seqs=len(prompts))

    def decode_alone(ids, n):
        slot = engine.add_sequence()
        token = engine.prefill(slot, ids).tokens[-1]
        rows, tokens = [], []
        for i in range(n):
            tokens.append(token)
            step = engine.step([token], [slot], [len(ids) + i], [0], "decode")
            rows.append(engine.logits_to_host(step.logits)[0])
            token = step.tokens[0]
        engine.free_sequence(slot)
        return np.stack(rows), tokens

    alone = [decode_alone(ids, steps - (2 if i == late else 0) - (3 if i == early else 0))
             for i, ids in enumerate(prompts)]
    slots = [engine.add_sequence() for _ in prompts]
    nxt = {i: engine.prefill(slots[i], ids).tokens[-1] for i, ids in enumerate(prompts) if i != late}
    done = {i: 0 for i in nxt}
    got = {i: [] for i in range(len(prompts))}
    for t in range(steps):
        if t == 2:
            nxt[late], done[late] = engine.prefill(slots[late], prompts[late]).tokens[-1], 0
        batch = [i for i in sorted(nxt) if done[i] < len(alone[i][1])]
        step = engine.step([nxt[i] for i in batch], [slots[i] for i in batch],
                           [len(prompts[i]) + done[i] for i in batch], range(len(batch)), "decode")
        logits = engine.logits_to_host(step.logits)
        for row, i in enumerate(batch):
            assert nxt[i] == alone[i][1][done[i]], (arch, dtype, i, t)
            got[i].append(logits[row])
            nxt[i], done[i] = step.tokens[row], done[i] + 1
    for i, (rows, _) in enumerate(alone):
        np.testing.assert_array_equal(np.stack(got[i]), rows, err_msg=f"{arch} {dtype} sequence {i}")
    model.close()


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_speculative_verification_rows_get_the_logits_of_plain_decoding(hip, tmp_path, arch):
    """Speculative decoding's premise on hip: k draft tokens verified as k + 1 decode rows of one sequence (each
    row writing its K/V, then attending to the positions up to its own; a sliding window for gemma3) give, bit
    for bit, the logits plain decoding gives at those positions; and generations with prompt lookup and with a
    drafter that is right or wrong give the plain tokens, greedy and seeded."""
    from rocmforge_core.engine import Engine, SamplingParams
    from rocmforge_core.engine.model import Model
    from rocmforge_core.engine.speculative import PromptLookup, Speculation
    from rocmforge_core.models.synthetic import TinyConfig, write_model

    config = TinyConfig(dtype="Q8_0", sliding_window=4 if arch == "gemma3" else 0)
    path = tmp_path / f"{arch}-spec.gguf"
    write_model(path, arch, config, seed=6)
    prompt = [5, 9, 2, 7, 5, 9, 2, 7, 5, 9]
    model = Model(path, backend="hip")
    engine = Engine(model, n_ctx=64)
    slot = engine.add_sequence()
    token = engine.prefill(slot, prompt).tokens[-1]
    plain, tokens = [], [token]
    for i in range(6):
        step = engine.step([tokens[-1]], [slot], [len(prompt) + i], [0], "decode")
        plain.append(engine.logits_to_host(step.logits)[0])
        tokens.append(step.tokens[0])
    engine.free_sequence(slot)
    slot = engine.add_sequence()
    engine.prefill(slot, prompt)
    for k in (2, 5):  # rows 0..k from position len(prompt), then again over the same positions
        step = engine.step(tokens[:k + 1], [slot] * (k + 1), range(len(prompt), len(prompt) + k + 1),
                           range(k + 1), "decode")
        np.testing.assert_array_equal(engine.logits_to_host(step.logits)[:k + 1], np.stack(plain[:k + 1]))
        assert step.tokens == tokens[1:k + 2]
    engine.free_sequence(slot)

    class Drafter:
        def __init__(self, ids, wrong):
            self.full, self.wrong = prompt + ids, wrong

        def propose(self, requests):
            return [[(t + self.wrong) % config.vocab_size for t in self.full[len(c):len(c) + k]]
                    for _, c, k in requests]

        def release(self, key):
            pass

    for sampling in (SamplingParams(temperature=0), SamplingParams(temperature=1.0, seed=3, repeat_penalty=1.2)):
        want = engine.generate(prompt, max_tokens=20, sampling=sampling)
        for drafter in (PromptLookup(), Drafter(want.ids, 0), Drafter(want.ids, 1)):
            got = engine.generate(prompt, max_tokens=20, sampling=sampling, speculation=Speculation(drafter, 4))
            assert got.ids == want.ids, (arch, sampling, type(drafter).__name__)
    model.close()


def _batched_ids(batcher, prompts, max_tokens, sampling) -> list[list[int]]:
    """The tokens the batcher's engine thread generates for each prompt, all submitted at once."""
    import threading
    from rocmforge_core.serve.batcher import Sequence

    finished = threading.Semaphore(0)
    seqs = [Sequence(p, max_tokens, k, lambda ev: ev[0] != "text" and finished.release())
            for p, k in zip(prompts, sampling)]
    threading.Thread(target=batcher.run, daemon=True).start()
    try:
        for s in seqs:
            batcher.submit(s)
        for _ in seqs:
            assert finished.acquire(timeout=120)
    finally:
        batcher.stop()
    return [s.ids for s in seqs]


def test_a_speculating_batcher_answers_as_generate_alone(hip, tmp_path):
    """The server's batcher on hip with prompt lookup: several sequences' verification rows in one decode step
    (greedy, seeded, penalised requests, 5 requests in 3 slots) give the tokens plain Engine.generate gives each."""
    from rocmforge_core.engine import Engine, SamplingParams
    from rocmforge_core.engine.model import Model
    from rocmforge_core.engine.speculative import PromptLookup, Speculation
    from rocmforge_core.models.synthetic import TinyConfig, write_model
    from rocmforge_core.serve.batcher import Batcher
    from rocmforge_core.serve.metrics import Metrics

    config = TinyConfig(dtype="Q8_0")
    path = tmp_path / "speculating.gguf"
    write_model(path, "llama", config, seed=8)
    prompts = [[5, 9, 2, 7] * (2 + i) for i in range(5)]
    kinds = [SamplingParams(temperature=0), SamplingParams(temperature=0.9, seed=11),
             SamplingParams(temperature=0, frequency_penalty=1.0)]
    model = Model(path, backend="hip")
    engine = Engine(model, n_ctx=128, max_seqs=3)
    alone = [engine.generate(p, max_tokens=16, sampling=kinds[i % 3]).ids for i, p in enumerate(prompts)]
    counters = Metrics()
    batched = _batched_ids(Batcher(engine, metrics=counters, speculation=Speculation(PromptLookup(), 4)), prompts,
                           16, [kinds[i % 3] for i in range(len(prompts))])
    assert batched == alone and counters.draft_tokens > 0
    model.close()


def test_served_requests_answer_as_each_does_alone(hip, tmp_path):
    """The server's batcher on hip: requests with prompts of 3 to 150 tokens (long ones read in pieces, short ones
    sharing prefill steps), greedy and seeded sampling, penalties, 6 requests in 4 slots, give the tokens each gets
    from Engine.generate alone."""
    from rocmforge_core.engine import Engine, SamplingParams
    from rocmforge_core.engine.model import Model
    from rocmforge_core.models.synthetic import TinyConfig, write_model
    from rocmforge_core.serve.batcher import Batcher

    config = TinyConfig(dtype="Q8_0")
    path = tmp_path / "served.gguf"
    write_model(path, "llama", config, seed=8)
    rng = np.random.default_rng(4)
    prompts = [[int(t) for t in rng.integers(0, config.vocab_size, n)] for n in (3, 150, 7, 70, 12, 5)]
    kinds = [SamplingParams(temperature=0), SamplingParams(temperature=0.9, seed=11),
             SamplingParams(temperature=0, frequency_penalty=1.0), SamplingParams(temperature=1.2, top_k=8, seed=3)]
    model = Model(path, backend="hip")
    engine = Engine(model, n_ctx=200, max_seqs=4, prefill_chunk=64)
    alone = [engine.generate(p, max_tokens=10, sampling=kinds[i % 4]).ids for i, p in enumerate(prompts)]
    assert _batched_ids(Batcher(engine), prompts, 10, [kinds[i % 4] for i in range(len(prompts))]) == alone
    model.close()


def test_backend_works_from_another_thread(hip):
    # The driver's current context is per thread; a server runs the engine in a thread of its own.
    import threading
    x = np.arange(1024, dtype=np.float32)
    hip.from_host(x)  # the context is first made current in this thread
    seen = {}

    def worker():
        try:
            seen["out"] = hip.to_host(kernel("scale").fn(hip.from_host(x), s=2.0))
        except Exception as exc:  # reported below, in the test's own thread
            seen["error"] = exc

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert "error" not in seen, seen.get("error")
    np.testing.assert_array_equal(seen["out"], x * 2)


def test_sample_mask_bias_and_logprobs_on_a_full_vocabulary(hip):
    """A 128k vocabulary: rows with a mask of a few tokens, a forcing and a banning bias, one unconstrained, in one
    call, as the reference samples them; then the logprobs op on the same logits."""
    rng = np.random.default_rng(5)
    spec, vocab = ops.module("sample"), 128256
    logits = (rng.standard_normal((4, vocab)) * 4).astype(np.float32)
    keep = np.zeros(32 * spec.mask_words(vocab), dtype=bool)
    keep[rng.choice(vocab, 9, replace=False)] = True
    mask = np.packbits(keep, bitorder="little").view("<i4")
    constraints = [dict(mask=mask), dict(bias=[(int(rng.integers(vocab)), 40.0)]),
                   dict(bias=[(int(t), -100.0) for t in np.argsort(-logits[2])[:20]], temperature=0.0), dict()]
    rows = [{**spec.DEFAULTS, "seed": r, "step": 3, "history": [], **c} for r, c in enumerate(constraints)]
    args = (logits, *spec.pack(rows, 1), *spec.pack_constraints(rows, vocab, spec.bias_width(rows)))
    candidates = spec.candidates(rows, vocab)
    got = hip.to_host(kernel("sample").fn(*(hip.from_host(a) for a in args), candidates=candidates))
    np.testing.assert_array_equal(got, ops.reference("sample")(*args, candidates=candidates))
    tokens = got.astype(np.int32)
    lp = hip.to_host(kernel("logprobs").fn(hip.from_host(logits), hip.from_host(tokens), top=20))
    want = ops.reference("logprobs")(logits, tokens, top=20)
    np.testing.assert_array_equal(lp[:, 1:21], want[:, 1:21])
    np.testing.assert_allclose(lp, want, rtol=1e-6)
