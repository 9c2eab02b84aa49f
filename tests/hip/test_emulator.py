"""The hip backend on its emulator platform (ROCMFORGE_HIP_PLATFORM=emulator), in CI without a GPU: every kernel
built by the host C++ compiler and run on the CPU with the GPU's execution semantics, at wave 32 and at wave 64
(CDNA's, which no GPU here has).

Most checks are the GPU tests themselves (taken from test_gpu.py, collected here with this module's ``hip``
fixture): the conformance kit over every hip kernel, model-sized products of every format, long attention,
sampling on a full vocabulary, graph capture and replay against eager launches, the device-side finiteness check,
out-of-memory, whole synthetic models against the reference backend. Then what only
the emulator can check: each format's device code group by group against its numpy reference, results that do
not depend on how blocks are spread over OS threads, and planted bugs (divergent barriers, a missing barrier, bad
shuffles, deadlock) that must come out as KernelError or wrong values, not a hang.

Each wave gets a HipBackend of its own in a registry of its own, so the process-wide backend is untouched.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from rocmforge_core.hookspecs import hookimpl
from rocmforge_core.registry import PluginRecord, Registry, registry_in_use
from rocmforge_rocm_hip import sources
from rocmforge_rocm_hip.backend import HipBackend, kernel_names
from rocmforge_rocm_hip.ops import kernels
from rocmforge_rocm_hip.runtime import F32, I32, PTR, KernelError, RuntimeUnavailable, open_runtime
from rocmforge_rocm_hip.runtime_emulator import host_compiler

from . import test_gpu as gpu

HERE = Path(__file__).resolve().parent
WAVES = (32, 64)

pytestmark = pytest.mark.skipif(host_compiler() is None,
                                reason="no host C++ compiler (c++, g++ or clang++) to build the emulator's kernels")


class _HipPlugin:
    """The hip plugin's hooks for a backend of our own."""

    def __init__(self, backend: HipBackend) -> None:
        self.backend = backend

    @hookimpl
    def register_backends(self, register):
        register(self.backend)

    @hookimpl
    def register_kernels(self, register):
        for kernel in kernels(self.backend):
            register(kernel)


def emulator_registry(wave: int, threads: int | None = None) -> Registry:
    """The installed plugins, with a fresh hip backend whose runtime is the emulator at ``wave`` (opened here,
    while the variables ask for it)."""
    backend = HipBackend()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ROCMFORGE_HIP_PLATFORM", "emulator")
        env.setenv("ROCMFORGE_EMULATOR_WAVE", str(wave))
        if threads:
            env.setenv("ROCMFORGE_EMULATOR_THREADS", str(threads))
        else:
            env.delenv("ROCMFORGE_EMULATOR_THREADS", raising=False)
        assert backend.runtime.platform == "emulator"
    registry = Registry()
    registry.load_entry_points()
    registry.remove_plugin("hip")
    registry.add_plugin(_HipPlugin(backend), PluginRecord("hip", "tests", "0", __name__))
    return registry


@pytest.fixture(scope="module", params=WAVES, ids=[f"wave{w}" for w in WAVES])
def emu(request):
    """A registry whose hip backend runs on the emulator, in use as the process-wide one while the tests run."""
    registry = emulator_registry(request.param)
    with registry_in_use(registry):
        yield registry


@pytest.fixture(scope="module")
def hip(emu):
    """The emulator's hip backend with every unit built, in parallel (the tests would build them one by one)."""
    backend = emu.backend("hip")
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(backend.functions, sources.all_units(emu.formats.values())))
    return backend


# Every GPU test but test_device_properties (which checks a real device's arch and memory), run as it is: collected
# here, it gets this module's `hip` fixture.
test_conformance_kit = gpu.test_conformance_kit
test_matmul_model_shapes = gpu.test_matmul_model_shapes
test_decode_products_are_batch_invariant = gpu.test_decode_products_are_batch_invariant
test_embedding_and_dequant_are_exact_on_large_tables = gpu.test_embedding_and_dequant_are_exact_on_large_tables
test_attention_long_and_prefill = gpu.test_attention_long_and_prefill
test_sample_full_vocabulary_matches_reference = gpu.test_sample_full_vocabulary_matches_reference
test_sample_mask_bias_and_logprobs_on_a_full_vocabulary = gpu.test_sample_mask_bias_and_logprobs_on_a_full_vocabulary
test_graph_capture_replays_with_new_inputs = gpu.test_graph_capture_replays_with_new_inputs
test_quantized_activation_is_not_reused_after_a_write = gpu.test_quantized_activation_is_not_reused_after_a_write
test_captured_neighbours_share_launches_and_match_eager = gpu.test_captured_neighbours_share_launches_and_match_eager
test_all_finite = gpu.test_all_finite
test_out_of_memory_is_reported = gpu.test_out_of_memory_is_reported
test_whole_model_logits_match_reference = gpu.test_whole_model_logits_match_reference
test_f16_kv_cache_matches_the_reference_with_one = gpu.test_f16_kv_cache_matches_the_reference_with_one
test_a_sequence_decoded_in_any_batch_gets_the_logits_it_gets_alone = (
    gpu.test_a_sequence_decoded_in_any_batch_gets_the_logits_it_gets_alone)
test_served_requests_answer_as_each_does_alone = gpu.test_served_requests_answer_as_each_does_alone
test_speculative_verification_rows_get_the_logits_of_plain_decoding = (
    gpu.test_speculative_verification_rows_get_the_logits_of_plain_decoding)
test_a_speculating_batcher_answers_as_generate_alone = gpu.test_a_speculating_batcher_answers_as_generate_alone
test_backend_works_from_another_thread = gpu.test_backend_works_from_another_thread


# Each benchmarked architecture and each type at least once (a model run on the emulator takes 5-20 s; the GPU
# runs all 20 pairs).
@pytest.mark.parametrize("shape,qtype", [("llama-tiny", "Q8_0"), ("qwen2-tiny", "Q6_K"), ("qwen3-tiny", "Q4_0"),
                                         ("gemma3-tiny", "Q4_K_M"), ("gemma3-tiny", "F16")])
def test_bench_shapes_logits_match_reference(hip, tmp_path, shape, qtype):
    gpu.test_bench_shapes_logits_match_reference(hip, tmp_path, shape, qtype)


def load(hip, unit, names):
    """Kernels of a test's own unit (the backend knows only its own units' kernel names)."""
    return hip.runtime.load(hip.runtime.cached_binary(unit), names)


# -- the platform -------------------------------------------------------------------------------------------------

def test_the_emulator_is_chosen_only_when_asked(monkeypatch):
    monkeypatch.setenv("ROCMFORGE_HIP_PLATFORM", "cuda")
    with pytest.raises(RuntimeUnavailable, match="'amd', 'nvidia' or 'emulator', not 'cuda'"):
        open_runtime()
    monkeypatch.delenv("ROCMFORGE_HIP_PLATFORM")
    try:
        runtime = open_runtime()
    except RuntimeUnavailable as exc:
        assert "emulator" not in str(exc)
    else:
        assert runtime.platform != "emulator"


def test_available_says_it_is_the_emulator(hip):
    verdict = hip.available()
    assert verdict, verdict.reason
    assert verdict.reason.startswith("emulator (CPU) (emulator platform, emu, wave ")
    assert hip.devices()[0].wave_size in WAVES


def test_every_unit_builds(emu, hip):
    """Every unit of every format builds (the fixture built them; warnings are errors, as for NVRTC and clang in
    test_compile.py) with every kernel the backend launches in its launch table."""
    for unit in sources.all_units(emu.formats.values()):
        assert sorted(hip.functions(unit)) == sorted(kernel_names(unit, hip.runtime.mma_s8)), unit.label


# -- format device code, group by group ---------------------------------------------------------------------------

@pytest.mark.parametrize("fmt_name", ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K",
                                      "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS", "MXFP4"])
def test_format_device_code_decodes_like_the_reference(emu, hip, fmt_name):
    """Each format's rf_dequant8 reproduces the format's reference dequantization bit for bit on random blocks, its
    rf_dot8_q8 each group's dot with 8-bit activations, its rf_chunk_load + rf_chunk_dot each chunk's (tests/hip/format_probe.hip,
    built without floating-point contraction)."""
    fmt = emu.format(fmt_name)
    path = sources.format_source(fmt)
    unit = sources.Unit(str(HERE / "format_probe.hip"), fmt.name, path, (), exact=True)
    probes = load(hip, unit, ["rf_probe_dequant"] + ["rf_probe_dot8"] * sources.has_dot8_q8_source(path)
                  + ["rf_probe_chunk"] * bool(sources.chunk_size(path)))
    rng = np.random.default_rng(17)
    raw = fmt.random_blocks(rng, 256 if fmt.block_size > 1 else 4096)
    want = fmt.dequantize(raw.reshape(1, -1)).reshape(-1)
    xq = rng.integers(-127, 128, want.size).astype(np.int8)
    blocks, acts = hip.from_host(raw.reshape(-1)), hip.from_host(xq.view(np.uint8))
    groups = want.size // 8

    got = hip.empty((want.size,), "f32")
    hip.runtime.launch(probes["rf_probe_dequant"], ((groups + 255) // 256, 1, 1), (256, 1, 1),
                       [(blocks.ptr, PTR), (got.ptr, PTR), (groups, I32)])
    np.testing.assert_array_equal(hip.to_host(got).view(np.uint32), want.view(np.uint32))
    products = want.astype(np.float64) * xq
    if sources.has_dot8_q8_source(path):
        dots = hip.empty((groups,), "f32")
        hip.runtime.launch(probes["rf_probe_dot8"], ((groups + 255) // 256, 1, 1), (256, 1, 1),
                           [(blocks.ptr, PTR), (acts.ptr, PTR), (dots.ptr, PTR), (groups, I32)])
        expected = products.reshape(-1, 8).sum(axis=1)
        np.testing.assert_allclose(hip.to_host(dots), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    chunk = sources.chunk_size(path)
    if chunk:  # the chunks partition each block, in an order of the format's choosing: compare block sums
        n = want.size // chunk
        scales = hip.from_host(np.ones(want.size // 32, np.float32))
        dots = hip.empty((n,), "f32")
        hip.runtime.launch(probes["rf_probe_chunk"], ((n + 255) // 256, 1, 1), (256, 1, 1),
                           [(blocks.ptr, PTR), (acts.ptr, PTR), (scales.ptr, PTR), (dots.ptr, PTR), (n, I32)])
        per_block = hip.to_host(dots).reshape(-1, fmt.block_size // chunk).sum(axis=1, dtype=np.float64)
        expected = products.reshape(-1, fmt.block_size).sum(axis=1)
        np.testing.assert_allclose(per_block, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


# -- schedules ----------------------------------------------------------------------------------------------------

def _q4k_products(registry):
    """Decode, small-batch and tiled products of one Q4_K weight, and an rmsnorm: kernels with barriers, shuffles
    and many blocks."""
    rng = np.random.default_rng(4)
    hip = registry.backend("hip")
    fmt = registry.format("Q4_K")
    w = hip.upload_weight(fmt.random_weight(rng, "w", (300, 1024)))
    matmul = next(k for k in registry.kernels if k.backend == "hip" and k.op == "matmul").fn
    rmsnorm = next(k for k in registry.kernels if k.backend == "hip" and k.op == "rmsnorm").fn
    outs = []
    for m in (1, 3, 40):
        x = hip.from_host(rng.standard_normal((m, 1024)).astype(np.float32))
        outs.append(hip.to_host(matmul(x, w)))
        outs.append(hip.to_host(rmsnorm(x, hip.from_host(np.ones(1024, np.float32)), eps=1e-6)))
    return outs


def test_results_do_not_depend_on_os_threads(hip):
    results = []
    for threads in (1, 3):
        registry = emulator_registry(hip.runtime.info.wave_size, threads)
        with registry_in_use(registry):
            results.append(_q4k_products(registry))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


def test_ucontext_fibers_match_the_hand_written_switch(hip):
    """The portable fiber switch (ucontext, used off x86-64) gives the same results as the x86-64 one."""
    rng = np.random.default_rng(8)
    x = hip.from_host(rng.standard_normal((5, 700)).astype(np.float32))
    w = hip.from_host(rng.standard_normal(700).astype(np.float32))
    results = []
    for unit in (sources.ELEMENTWISE, sources.Unit("elementwise.hip", defines=(("RF_EMU_UCONTEXT", 1),))):
        out = hip.empty((5, 700), "f32")
        hip.launch(unit, "rf_rmsnorm", (5,), (192,), [(x.ptr, PTR), (w.ptr, PTR), (out.ptr, PTR), (700, I32),
                                                      (1e-6, F32), (0, PTR), (0, PTR)])
        results.append(hip.to_host(out))
    np.testing.assert_array_equal(results[0], results[1])


# -- planted bugs -------------------------------------------------------------------------------------------------

PLANTED = r"""
extern "C" __global__ void planted_race(const float* x, float* out) {  // thread 0 writes, nobody waits for it
    __shared__ float s;
    if (threadIdx.x == 0) s = x[blockIdx.x];
    out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}
extern "C" __global__ void planted_fixed(const float* x, float* out) {
    __shared__ float s;
    if (threadIdx.x == 0) s = x[blockIdx.x];
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}
extern "C" __global__ void planted_divergent_barrier(const float* x, float* out) {
    if (threadIdx.x < 32) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = x[0];
}
extern "C" __global__ void planted_early_exit(const float* x, float* out) {
    if (threadIdx.x == 5) return;
    __syncthreads();
    out[threadIdx.x] = x[0];
}
extern "C" __global__ void planted_deadlock(const float* x, float* out) {  // half a wave shuffles, half waits
    float v = x[threadIdx.x];
    if (threadIdx.x % RF_WAVE < RF_WAVE / 2) v = __shfl_xor(v, 1, RF_WAVE);
    else __syncthreads();
    out[threadIdx.x] = v;
}
extern "C" __global__ void planted_exited_source(const float* x, float* out) {
    if (threadIdx.x == 3) return;
    out[threadIdx.x] = __shfl(x[threadIdx.x], 3, RF_WAVE);
}
extern "C" __global__ void planted_lane_out_of_range(const float* x, float* out) {
    out[threadIdx.x] = __shfl(x[threadIdx.x], RF_WAVE, RF_WAVE);
}
"""


@pytest.fixture(scope="module")
def planted(hip, tmp_path_factory):
    path = tmp_path_factory.mktemp("planted") / "planted.hip"
    path.write_text(PLANTED)
    names = [line.split("void ")[1].split("(")[0] for line in PLANTED.splitlines() if "__global__" in line]
    planted_kernels = load(hip, sources.Unit(str(path)), names)
    x = hip.from_host(np.arange(1, 257, dtype=np.float32))
    out = hip.empty((256,), "f32")

    def launch(name, grid=(1,), block=(128,)):
        hip.runtime.launch(planted_kernels[name], grid + (1,) * (3 - len(grid)), block + (1,) * (3 - len(block)),
                           [(x.ptr, PTR), (out.ptr, PTR)])
        return hip.to_host(out)
    return launch


def test_a_missing_barrier_shows_in_the_results(planted):
    """Between barriers the threads of odd blocks run in descending order: the readers then run before the writer
    and read shared memory as each block starts it, 0xff bytes (NaN)."""
    fixed = planted("planted_fixed", grid=(2,))
    np.testing.assert_array_equal(fixed, np.repeat([1.0, 2.0], 128))
    raced = planted("planted_race", grid=(2,))
    np.testing.assert_array_equal(raced[:129], fixed[:129])  # block 0 (ascending), and block 1's thread 0
    assert np.isnan(raced[129:]).all()  # block 1 ran thread 0, the writer, last


@pytest.mark.parametrize("name,message", [
    ("planted_divergent_barrier", r"threads wait at different barriers: thread \d+ at .*planted.hip:\d+ while"),
    ("planted_early_exit", r"thread 5 exited while|waits at __syncthreads .* have exited"),
    ("planted_deadlock", r"deadlock, no thread can go on: .*wait at a shuffle .*wait at __syncthreads"),
    ("planted_exited_source", r"reads lane 3 in a shuffle .* but that thread has exited"),
    ("planted_lane_out_of_range", r"reads lane (32|64) at .*planted.hip:\d+ \(width (32|64)\)"),
])
def test_planted_bugs_are_reported_not_hung(planted, name, message):
    with pytest.raises(KernelError, match=f"kernel {name} \\(grid \\(1,1,1\\), block \\(128,1,1\\)\\), block "
                                          f"\\(0,0,0\\): .*(?:{message})"):
        planted(name)


def test_arguments_are_checked_against_the_kernel(hip):
    fns = hip.functions(sources.ELEMENTWISE)
    with pytest.raises(KernelError, match="kernel rf_scale takes 4 arguments, the launch passed 3"):
        hip.runtime.launch(fns["rf_scale"], (1, 1, 1), (32, 1, 1), [(0, PTR), (0, PTR), (8, I32)])
    with pytest.raises(KernelError, match="rf_scale: argument 2 is an integer of 8 bytes, the launch passed an "
                                          "integer of 4 bytes"):
        hip.runtime.launch(fns["rf_scale"], (1, 1, 1), (32, 1, 1), [(0, PTR), (0, PTR), (8, I32), (8, I32)])
