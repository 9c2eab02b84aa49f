"""The "cpu" backend: numpy arrays in host memory; its kernels are numba code registered per op and per format."""

from __future__ import annotations

import platform

from rocmforge_core.backend import DeviceInfo, HostBackend
from rocmforge_cpu_simd import compiling, threads as _threads


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _simd_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [x for x in ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                                        "avx512_bf16", "amx_int8") if x in flags]
    except OSError:
        pass
    return []


def _memory_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class CpuBackend(HostBackend):
    name = "cpu"

    def __init__(self) -> None:
        self.threads = _threads.set_threads(None)  # default: one thread per physical core

    def configure(self, threads: int | None = None) -> int:
        """Set the worker-thread count (``--threads``; None = physical cores). Returns the count in effect."""
        self.threads = _threads.set_threads(threads)
        return self.threads

    def devices(self) -> list[DeviceInfo]:
        return [DeviceInfo(_cpu_model(), platform.machine(), _memory_bytes(), _threads.physical_cores(),
                           extra={"simd": _simd_flags(), "threads": self.threads,
                                  "logical_cpus": len(_threads.usable_cpus())})]

    def compile_seconds(self) -> float:
        return compiling.seconds()

    def compile_ahead(self) -> int:
        return compiling.compile_twins()
