"""Compile checks of every HIP kernel without a GPU (CI): NVRTC for sm_90 (HIP's NVIDIA platform) and clang-19 with
Debian's ROCm device libraries for gfx90a, gfx942, gfx1100 and gfx1201. Any error or warning fails, and every
kernel the backend launches must be in the code object (an empty program once came out of a silent failure)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rocmforge_core.ops import ArgInfo, Signature
from rocmforge_core.registry import get_registry
from rocmforge_rocm_hip import sources
from rocmforge_rocm_hip.aot import AMD_TARGETS, clang_compile, find_toolchain
from rocmforge_rocm_hip.backend import kernel_names
from rocmforge_rocm_hip.runtime_nvidia import nvrtc_compile

HERE = Path(__file__).resolve().parent
AMD_ATTENTION = (sources.attention_unit(64, 64, False).defines, sources.attention_unit(128, 128, True).defines)
FORMATS_WITH_DEVICE_CODE = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K",
                            "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS", "MXFP4")


def units():
    return sources.all_units(get_registry().formats.values())


def test_every_expected_format_ships_hip_device_code():
    formats = get_registry().formats
    missing = [n for n in FORMATS_WITH_DEVICE_CODE if n not in formats or not sources.format_source(formats[n])]
    assert not missing


def _check_binary(unit, binary: bytes, log: str, target: str, mma_s8: bool = False) -> list[str]:
    problems = []
    if "warning" in log.lower():
        problems.append(f"{unit.label} on {target}: {log.strip()}")
    for name in kernel_names(unit, mma_s8):
        if name.encode() not in binary:
            problems.append(f"{unit.label} on {target}: kernel {name} missing from the code object")
    return problems


def test_nvrtc_sm90_builds_every_kernel():
    problems = []
    for unit in units():
        binary, log = nvrtc_compile(unit, "sm_90")
        problems += _check_binary(unit, binary, log, "sm_90", mma_s8=True)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("arch", AMD_TARGETS)
def test_clang_amd_builds_every_kernel(arch):
    toolchain = find_toolchain()
    if toolchain is None:
        pytest.skip("AMD toolchain not installed: `make toolchain` (run by `make test`) installs it")
    # The exact-arithmetic builds differ only in -ffp-contract, attention builds only in head-size defines: one
    # of each per target keeps CI time down (NVRTC above builds them all).
    todo = [u for u in units() if not u.exact and (u.file != "attention.hip" or u.defines in AMD_ATTENTION)]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda u: (u, *clang_compile(u, arch, toolchain)), todo))
    problems = [p for unit, binary, log in results for p in _check_binary(unit, binary, log, arch)]
    assert not problems, "\n".join(problems)


def test_backend_registers_and_explains_when_unusable():
    registry = get_registry()
    assert registry.plugins["hip"].ok, registry.plugins["hip"].error
    backend = registry.backend("hip")
    verdict = backend.available()
    if verdict:
        pytest.skip(f"a GPU is present here ({verdict.reason}); this checks the GPU-less message")
    assert "amd:" in verdict.reason and "nvidia:" in verdict.reason


def test_supports_gives_reasons():
    matmul = next(k for k in get_registry().kernels if k.backend == "hip" and k.op == "matmul")
    unknown = Signature("matmul", (ArgInfo((1, 256), "f32"), ArgInfo((32, 256), "Q9_9")))
    repacked = Signature("matmul", (ArgInfo((1, 256), "f32"), ArgInfo((32, 256), "Q4_0", "cpu.rows8")))
    q40 = Signature("matmul", (ArgInfo((1, 256), "f32"), ArgInfo((32, 256), "Q4_0")))
    assert not matmul.check(unknown) and "Q9_9" in matmul.check(unknown).reason
    assert not matmul.check(repacked) and "layout" in matmul.check(repacked).reason
    assert matmul.check(q40)
    sample = next(k for k in get_registry().kernels if k.backend == "hip" and k.op == "sample")
    args = (ArgInfo((2, 5000), "f32"), ArgInfo((2, 1), "i32"), ArgInfo((2, 7), "f64"), ArgInfo((2, 3), "i64"),
            ArgInfo((2, 157), "i32"), ArgInfo((2, 1), "i64"), ArgInfo((2, 1), "f32"))
    narrow = Signature("sample", args[:4] + (ArgInfo((2, 100), "i32"),) + args[5:], (("candidates", 64),))
    assert not sample.check(narrow) and "ceil(vocab/32)" in sample.check(narrow).reason
    unbounded = Signature("sample", args, (("candidates", 5000),))
    assert not sample.check(unbounded) and "top-k" in sample.check(unbounded).reason
    assert sample.check(Signature("sample", args, (("candidates", 64),)))
    assert sample.check(Signature("sample", args, (("candidates", 1),))).reason == "greedy"



def test_nvrtc_compile_leaves_interpreter_constants_alone():
    # NVRTC writes its log into the buffer it is given; a shared single-byte constant (b" " * 1 for an empty
    # log) would be overwritten, and every later b" " in the process would read b"\0".
    nvrtc_compile(units()[0], "sm_90")
    assert " ".encode() == bytes([32])
