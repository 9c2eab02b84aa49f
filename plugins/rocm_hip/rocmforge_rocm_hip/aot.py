"""Ahead-of-time builds for AMD targets with clang-19 and ROCm's device libraries (scripts/install-amd-toolchain.sh),
no GPU needed: the CI compile checks, and code objects a machine without hiprtc can load.

    python -m rocmforge_rocm_hip.aot --targets gfx90a,gfx942,gfx1100,gfx1201 --out DIR

writes DIR/<key>.bin for every kernel build (``sources.all_units``); point ROCMFORGE_HIP_AOT at DIR and the AMD
runtime loads those before compiling anything itself.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rocmforge_rocm_hip.runtime import KernelCompileError
from rocmforge_rocm_hip.sources import Unit, all_units

AMD_TARGETS = ("gfx90a", "gfx942", "gfx1100", "gfx1201")
AOT_COMPILER = "aot-clang"  # compiler id in ahead-of-time cache keys


def wave_size(arch: str) -> int:
    """Wave size the kernels are built for: 64 on GCN/CDNA (gfx9), 32 on RDNA (gfx10 and later)."""
    return 64 if arch.startswith("gfx9") else 32


def toolchain_prefix() -> Path:
    env = os.environ.get("ROCMFORGE_AMD_PREFIX")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "build" / "amd-toolchain"


def find_toolchain() -> tuple[str, Path] | None:
    """(clang-19 path, prefix) when `make toolchain` has run, else None."""
    clang = shutil.which("clang-19")
    prefix = toolchain_prefix()
    if clang and (prefix / ".complete-v2").is_file():
        return clang, prefix
    return None


def clang_compile(unit: Unit, arch: str, toolchain: tuple[str, Path] | None = None) -> tuple[bytes, str]:
    """(code object, warnings) for one AMD target; raises KernelCompileError on errors."""
    toolchain = toolchain or find_toolchain()
    if toolchain is None:
        raise KernelCompileError("the AMD toolchain is missing: run `make toolchain` "
                                 "(scripts/install-amd-toolchain.sh)")
    clang, prefix = toolchain
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "unit.hip"
        src.write_text(unit.source())
        out = Path(tmp) / f"unit.{arch}.hsaco"
        cmd = [clang, "-x", "hip", f"--offload-arch={arch}", "--cuda-device-only", "--no-gpu-bundle-output",
               "-O3", "-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter",
               f"--rocm-path={prefix / 'usr'}", f"--rocm-device-lib-path={prefix / 'bitcode'}",
               f"-DRF_WAVE={wave_size(arch)}", "-ffp-contract=off" if unit.exact else "-ffp-contract=fast",
               *[f"-D{k}={v}" for k, v in unit.defines], str(src), "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise KernelCompileError(f"clang-19 could not compile {unit.label} for {arch}:\n{proc.stderr}")
        return out.read_bytes(), proc.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rocmforge_rocm_hip.aot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default=",".join(AMD_TARGETS), help="comma-separated gfx targets")
    parser.add_argument("--out", required=True, help="directory for the code objects")
    args = parser.parse_args(argv)
    from rocmforge_core.registry import get_registry
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    units = all_units(get_registry().formats.values())
    failed = 0
    for arch in [t.strip() for t in args.targets.split(",") if t.strip()]:
        for unit in units:
            try:
                binary, _ = clang_compile(unit, arch)
            except KernelCompileError as exc:
                print(exc, file=sys.stderr)
                failed += 1
                continue
            (out / f"{unit.key(arch, wave_size(arch), AOT_COMPILER)}.bin").write_bytes(binary)
        print(f"{arch}: {len(units)} builds")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
