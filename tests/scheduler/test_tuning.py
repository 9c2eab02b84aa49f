"""Measured tuning: shape buckets, the cache keyed by device fingerprint, stale plugin versions, and measured
costs steering placement."""

from __future__ import annotations

import json

from rocmforge_core.ops import ArgInfo, Signature
from rocmforge_core.scheduler.costs import CostModel
from rocmforge_core.scheduler.placement import Placer
from rocmforge_core.program import Site
from rocmforge_core.engine.model import trace_file
from rocmforge_core.scheduler.tuning import Tuner, TuningCache, bucket, fingerprint_id

from .fakes import CPUPlugin, GPUPlugin
from .handmade import model_sites
from .tiny_model import write_tiny_llama


def matmul_site(m, fmt="Q8_0", phase=None):
    sig = Signature("matmul", (ArgInfo((m, 64), "f32"), ArgInfo((128, 64), fmt)))
    return Site("blk.0.ffn_up", "matmul", sig, phase or ("decode" if m == 1 else "prefill"))


def test_buckets_round_batch_sizes_and_keep_weights_exact():
    assert bucket(matmul_site(300)) == bucket(matmul_site(512)) == "matmul Q8_0 prefill 512x64,128x64"
    assert bucket(matmul_site(513)) != bucket(matmul_site(512))
    assert bucket(matmul_site(1)) == "matmul Q8_0 decode 1x64,128x64"
    assert bucket(matmul_site(1, "Q4_K")) != bucket(matmul_site(1))


def test_tune_times_every_capable_kernel_and_copies(make_registry, tmp_path):
    reg = make_registry(gpu=GPUPlugin(refuse_formats={"Q4_0"}), cpu=CPUPlugin())
    model = trace_file(write_tiny_llama(tmp_path / "tiny.gguf"), reg, prefill_tokens=8)
    cache = TuningCache.for_registry(reg, tmp_path / "tune")
    tuner = Tuner(reg, cache, ["gpu", "cpu"], repeat=2)
    for sites in model.steps.values():
        assert tuner.tune_sites(sites) > 0
    tuner.tune_copies()
    cache.save()
    assert tuner.failures == []
    kernels = {key.split("|")[0] for key in cache.entries}
    assert {"gpu.matmul", "cpu.matmul", "gpu.attention", "cpu.sample"} <= kernels
    # gpu refuses Q4_0 (ffn_up): only cpu was timed for it.
    assert not [k for k in cache.entries if k.startswith("gpu.matmul|matmul Q4_0")]
    assert [k for k in cache.entries if k.startswith("cpu.matmul|matmul Q4_0")]
    assert set(cache.copies) == {"gpu.from_host", "gpu.to_host"}
    data = json.loads(cache.path.read_text())
    assert cache.path.name == f"{fingerprint_id(data['fingerprint'])}.json"
    assert data["fingerprint"]["devices"]["gpu"][0]["arch"] == "fake1"
    again = TuningCache.for_registry(reg, tmp_path / "tune")
    assert again.entries == cache.entries and not again.empty


def test_measured_costs_steer_auto_placement_and_stale_versions_are_ignored(make_registry, tmp_path):
    reg = make_registry(gpu=GPUPlugin(), cpu=CPUPlugin())
    sites = model_sites(2)
    cache = TuningCache.for_registry(reg, tmp_path)
    by_name = {k.name: k for k in reg.kernels}
    # Measurements say the cpu output matmul is much faster than the gpu one.
    output = sites[-1]
    cache.record(by_name["gpu.matmul"], output, 1e-3)
    cache.record(by_name["cpu.matmul"], output, 1e-6)
    placed = Placer(reg, None, costs=CostModel(reg, cache)).place(sites)
    assert placed.sites[-1].backend == "cpu" and placed.sites[-1].cost.measured
    assert not placed.sites[0].cost.measured
    # A new version of the cpu plugin: its measurements no longer count (explain says why).
    reg.plugins["fake-cpu"].version = "2.0"
    placed = Placer(reg, None, costs=CostModel(reg, cache)).place(sites)
    assert placed.sites[-1].backend == "cpu" and not placed.sites[-1].cost.measured
    assert cache.stale == {"fake-cpu 1.0 -> 2.0"}


def test_without_a_cache_everything_is_estimated(make_registry, tmp_path):
    reg = make_registry(gpu=GPUPlugin(), cpu=CPUPlugin())
    cache = TuningCache.for_registry(reg, tmp_path / "empty")
    assert cache.empty
    placed = Placer(reg, "gpu", costs=CostModel(reg, None)).place(model_sites(2))
    assert not any(p.cost.measured for p in placed.sites)


def test_estimates_order_backends_sensibly(make_registry):
    reg = make_registry(gpu=GPUPlugin(), cpu=CPUPlugin())
    costs = CostModel(reg)
    by_name = {k.name: k for k in reg.kernels}
    big = matmul_site(512)
    big = Site(big.name, "matmul", Signature("matmul", (ArgInfo((512, 4096), "f32"), ArgInfo((4096, 4096), "Q8_0"))),
               "prefill")
    assert costs.op(big, by_name["gpu.matmul"]).seconds < costs.op(big, by_name["cpu.matmul"]).seconds
    assert costs.op(big, by_name["cpu.matmul"]).seconds < costs.op(big, by_name["reference.matmul"]).seconds
    # A row lookup costs the rows read, not the table.
    lookup = lambda vocab: Site("token_embd", "embedding", Signature("embedding", (  # noqa: E731
        ArgInfo((vocab, 640), "Q8_0"), ArgInfo((1,), "i32"))), "decode")
    assert costs.op(lookup(1000), by_name["cpu.embedding"]) == costs.op(lookup(262144), by_name["cpu.embedding"])
    # Copies: free between host backends, latency plus bandwidth to and from a device.
    assert costs.copy(1 << 20, "cpu", "reference").seconds == 0 and not costs.crosses("cpu", "reference")
    assert costs.copy(1 << 20, "gpu", "cpu").seconds > costs.copy(1 << 10, "gpu", "cpu").seconds > 0
