"""cpu kernels beyond the SPEC cases: accuracy of the quantized products, out= buffers, softcap, sampler ties,
threads, and the on-disk JIT cache."""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_info

from rocmforge_core import ops
from rocmforge_core.errors import BackendError
from rocmforge_core.formats import dequantize_weight
from rocmforge_core.ops.sample import DEFAULTS, pack, pack_constraints
from rocmforge_cpu_simd import quantized, threads
from rocmforge_cpu_simd.ops import attention, rmsnorm, sample

NATIVE = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K")


def _kernel(registry, sig):
    return registry.kernels_for(sig, backend="cpu")[0].kernel


@pytest.mark.parametrize("fmt", NATIVE)
@pytest.mark.parametrize("m", [1, 3, 6, quantized.BLAS_MIN_ROWS - 1, quantized.BLAS_MIN_ROWS, 70])
@pytest.mark.parametrize("n", [200, 201])  # decode takes rows in pairs: an odd count leaves one alone
def test_quantized_matmul_is_float32_accurate(registry, cpu, fmt, m, n):
    """Activations stay float32, so the products are far inside the 5e-4 allowed for 8-bit activations."""
    rng = np.random.default_rng(7)
    f = registry.format(fmt)
    w = f.random_weight(rng, "w", (n, 768))
    x = rng.standard_normal((m, 768)).astype(np.float32)
    expected = x.astype(np.float64) @ dequantize_weight(w).astype(np.float64).T
    packed = cpu.upload_weight(w)
    kernel = _kernel(registry, ops.signature("matmul", (x, packed), {}))
    assert kernel.name == f"cpu.{fmt.lower()}.matmul"
    out = np.full((m, n), np.nan, dtype=np.float32)
    assert kernel.fn(x, packed, out=out) is out
    assert ops.nmse(out, expected) < 1e-10


@pytest.mark.parametrize("fmt", NATIVE)
@pytest.mark.parametrize("m", [1, 5])
def test_parallel_builds_match_serial_ones(registry, cpu, monkeypatch, fmt, m):
    """Small products run serially; force the parallel builds (odd row count: decode pairs rows)."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba runs one thread here: no parallel build to check")
    rng = np.random.default_rng(11)
    f = registry.format(fmt)
    w = f.random_weight(rng, "w", (257, 512))
    packed = cpu.upload_weight(w)
    x = rng.standard_normal((m, 512)).astype(np.float32)
    before = cpu.threads
    cpu.configure(threads=2)
    monkeypatch.setattr(threads, "_split_small", False)  # the fixed rule, not the measured modes
    try:
        serial = quantized.matmul(x, packed)
        monkeypatch.setattr(threads, "PARALLEL_MIN_WORK", 0)
        parallel = quantized.matmul(x, packed)
        rows = quantized.embedding(packed, np.arange(257))
    finally:
        cpu.configure(threads=before)
    np.testing.assert_allclose(parallel, serial, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(rows, dequantize_weight(w))


def _drive(modes, seconds_per_mac, calls, now=0.0, work=300_000):
    """Feed ``modes`` kernels of ``work`` multiply-adds costing seconds_per_mac[mode] each (a fake clock);
    returns the clock and how many calls each mode ran."""
    ran = [0, 0, 0]
    for _ in range(calls):
        modes.parallel(work, now)
        ran[modes.mode] += 1
        now += work * seconds_per_mac[modes.mode]
        modes.done(work, now)
    return now, ran


def test_parallel_mode_follows_measured_cost():
    """With spinning workers the mode (0: serial, 1: large kernels parallel, 2: all parallel) is the cheapest
    measured one; when the cheapest changes (another job takes a core), the trials find the new one."""
    modes = threads._Modes()
    calls_per_window = threads.WINDOW_WORK // 300_000 + 1
    now, ran = _drive(modes, [1.2e-10, 1.2e-10, 0.9e-10], 200 * calls_per_window)
    assert modes.mode == 2 and ran[2] > 0.9 * sum(ran) and min(ran[:2]) > 0  # the others were tried
    now, ran = _drive(modes, [1.3e-10, 1.3e-10, 30e-10], 200 * calls_per_window, now)
    assert modes.mode in (0, 1) and ran[2] < 0.02 * sum(ran)  # trials of mode 2 end early
    assert modes.parallel(3 * 1024 * 1024, now) == (modes.mode == 1)
    modes.parallel(300_000, now + 2 * threads.IDLE_S)  # a pause between requests restarts the window
    assert modes.work == 0


@pytest.mark.parametrize("fmt", NATIVE)
def test_embedding_rows_are_exact(registry, cpu, fmt):
    rng = np.random.default_rng(3)
    f = registry.format(fmt)
    w = f.random_weight(rng, "t", (64, 512))
    ids = np.array([63, 0, 5, 5, 17], dtype=np.int32)
    packed = cpu.upload_weight(w)
    got = _kernel(registry, ops.signature("embedding", (packed, ids), {})).fn(packed, ids)
    np.testing.assert_array_equal(got, dequantize_weight(w)[ids])


def test_attention_softcap_and_window_match_reference():
    rng = np.random.default_rng(5)
    bs, hkv, hq, d = 8, 2, 6, 32
    k_cache = rng.standard_normal((9, bs, hkv, d)).astype(np.float32)
    v_cache = rng.standard_normal((9, bs, hkv, d)).astype(np.float32)
    tables = np.array([[3, 1, 7, 2], [4, 8, 6, 5]], dtype=np.int32)
    seq_ids = np.array([0, 0, 1], dtype=np.int32)
    positions = np.array([20, 21, 9], dtype=np.int32)
    q = rng.standard_normal((3, hq, d)).astype(np.float32) * 4
    k = rng.standard_normal((3, hkv, d)).astype(np.float32)
    v = rng.standard_normal((3, hkv, d)).astype(np.float32)
    params = dict(scale=0.3, window=6, softcap=5.0)
    kc, vc = k_cache.copy(), v_cache.copy()
    expected = ops.reference("attention")(q, k, v, kc, vc, tables, seq_ids, positions, **params)
    out = np.empty_like(expected)
    got = attention.attention(q, k, v, k_cache, v_cache, tables, seq_ids, positions, out=out, **params)
    assert got is out
    assert ops.nmse(got, expected) < 1e-10
    np.testing.assert_array_equal(k_cache, kc)
    np.testing.assert_array_equal(v_cache, vc)


@pytest.mark.parametrize("window, softcap", [(0, 0.0), (40, 0.0), (0, 5.0), (100, 3.0)])
def test_prefill_runs_through_blas_match_reference(window, softcap):
    """A batch mixing a long prefill run that continues a cached prefix (matrix products, several chunks), a
    second sequence's shorter run and a decode row (both through the loop kernel), as the server batches them."""
    rng = np.random.default_rng(window)
    bs, hkv, hq, d = 16, 2, 8, 64
    tables = np.arange(1, 1 + 3 * 12, dtype=np.int32).reshape(3, 12)
    k_cache = rng.standard_normal((40, bs, hkv, d)).astype(np.float32)
    v_cache = rng.standard_normal((40, bs, hkv, d)).astype(np.float32)
    seq_ids = np.array([0] * 150 + [1] * 20 + [2], dtype=np.int32)
    positions = np.concatenate([np.arange(30, 180), np.arange(20), [70]]).astype(np.int32)
    m = len(positions)
    q = rng.standard_normal((m, hq, d)).astype(np.float32) * 2
    k = rng.standard_normal((m, hkv, d)).astype(np.float32)
    v = rng.standard_normal((m, hkv, d)).astype(np.float32)
    params = dict(scale=d ** -0.5, window=window, softcap=softcap)
    kc, vc = k_cache.copy(), v_cache.copy()
    expected = ops.reference("attention")(q, k, v, kc, vc, tables, seq_ids, positions, **params)
    got = attention.attention(q, k, v, k_cache, v_cache, tables, seq_ids, positions, **params)
    assert attention.attention_blas.runs(seq_ids, positions) == [(0, 150), (150, 170), (170, 171)]
    assert ops.nmse(got, expected) < 1e-10
    np.testing.assert_array_equal(k_cache, kc)


def test_sampler_breaks_top_k_ties_like_the_reference():
    logits = np.zeros(5000, dtype=np.float32)
    logits[[10, 4000, 77]] = 3.0
    logits[100:4000:7] = 1.5  # many ties straddle the top-k threshold
    rows = [{**DEFAULTS, "top_k": 20, "seed": 11, "step": step, "temperature": 2.0, "top_p": 0.99, "min_p": 0.0,
             "repeat_penalty": 1.2, "history": [77, 5]} for step in range(40)]
    args = (np.tile(logits, (len(rows), 1)), *pack(rows, 2), *pack_constraints(rows, 5000, 1))
    expected = ops.reference("sample")(*args, candidates=32)
    np.testing.assert_array_equal(sample.sample(*args, candidates=32), expected)


def test_rmsnorm_in_place(registry):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 64)).astype(np.float32)
    w = rng.standard_normal(64).astype(np.float32)
    expected = ops.reference("rmsnorm")(x, w, eps=1e-6)
    assert rmsnorm.rmsnorm(x, w, eps=1e-6, out=x) is x
    assert ops.nmse(x, expected) < 1e-12


def test_out_must_fit():
    x = np.ones((2, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="expected a contiguous"):
        rmsnorm.rmsnorm(x, np.ones(8, np.float32), eps=1e-6, out=np.empty((8, 2), np.float32))


def test_threads_follow_configure(cpu):
    before = cpu.threads
    try:
        assert cpu.configure(threads=1) == 1 and numba.get_num_threads() == 1
        assert cpu.devices()[0].extra["threads"] == 1
        with pytest.raises(BackendError, match="at least 1"):
            cpu.configure(threads=0)
        with pytest.raises(BackendError, match="NUMBA_NUM_THREADS"):
            cpu.configure(threads=numba.config.NUMBA_NUM_THREADS + 1)
    finally:
        cpu.configure(threads=before)
    assert numba.get_num_threads() == before


@pytest.mark.parametrize("n, k", [(2048, 640), (640, 2048), (1536, 576), (49152, 576), (7, 64), (1, 8192)])
def test_sgemm_tiles_are_even_across_workers(n, k):
    from rocmforge_cpu_simd.gemm import TILE_BYTES, tile_rows
    for workers in (1, 2, 3, 8):
        rows = tile_rows(n, k, workers)
        tiles = -(-n // rows)
        assert rows * k * 4 <= max(TILE_BYTES, k * 4)
        assert tiles % workers == 0 or tiles == n  # as many tiles per worker (unless rows ran out)


def test_sgemm_leaves_blas_threads_as_they_were(registry, cpu):
    """Prefill tiles run single-threaded BLAS on the backend's own threads, only for their duration."""
    before = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    f = registry.format("Q8_0")
    w = f.random_weight(np.random.default_rng(0), "w", (300, 256))
    x = np.random.default_rng(1).standard_normal((quantized.BLAS_MIN_ROWS, 256)).astype(np.float32)
    got = quantized.matmul(x, cpu.upload_weight(w))
    assert ops.nmse(got, x @ dequantize_weight(w).T) < 1e-10
    assert [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"] == before


def test_default_threads_are_physical_cores(cpu):
    from rocmforge_cpu_simd.threads import physical_cores
    assert cpu.configure() == min(physical_cores(), numba.config.NUMBA_NUM_THREADS)


def test_jit_cache_lives_outside_the_sources():
    cache = Path(numba.config.CACHE_DIR)
    assert cache.is_absolute()
    assert Path(quantized.__file__).parent not in cache.parents


def test_serial_and_parallel_builds_have_their_own_cache_files():
    """numba's cache key ignores compile options: builds sharing a qualified name load each other's code."""
    builds = [attention._ATTEND, quantized._Q4_DOT, quantized._Q4_DEQUANT]
    builds += [quantized._I8_DOT[bs] for bs in (16, 32)]
    builds += [{p: quantized._I8_DEQUANT[bs, p] for p in (False, True)} for bs in (16, 32)]
    for pair in builds:
        assert pair[True].targetoptions["parallel"] and not pair[False].targetoptions["parallel"]
        assert pair[True].py_func.__qualname__ != pair[False].py_func.__qualname__
