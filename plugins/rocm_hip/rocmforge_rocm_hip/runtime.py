"""The GPU runtime interface shared by HIP's platforms, and the choice between them.

``runtime_amd`` (hip-python: hiprtc, hipModuleLaunchKernel) and ``runtime_nvidia`` (cuda-bindings: NVRTC cubins,
cuLaunchKernel) implement ``Runtime``; ``open_runtime()`` picks the platform that has a device, or explains why
neither does. ROCMFORGE_HIP_PLATFORM=amd|nvidia forces one; ROCMFORGE_HIP_PLATFORM=emulator picks
``runtime_emulator`` (the kernels on the CPU, a test platform), which is never chosen otherwise.
"""

from __future__ import annotations

import ctypes
import os
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from rocmforge_core.backend import DeviceInfo
from rocmforge_core.errors import BackendError
from rocmforge_rocm_hip.sources import Unit


class KernelCompileError(BackendError):
    """A kernel source failed to compile; the message carries the compiler's log."""


class KernelError(BackendError):
    """A kernel failed while it ran (the emulator's checks: divergent barriers, bad shuffles, deadlock); the
    message names the kernel, its launch and the threads."""


class RuntimeUnavailable(Exception):
    """This platform cannot run here (no library, no device, unsupported arch); str() says why."""


# Kernel arguments: (value, ctypes type). Pointers are plain ints.
PTR, I32, I64, F32, F64, U64 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64, ctypes.c_float, ctypes.c_double, ctypes.c_uint64


def pack_args(args) -> tuple:
    """ctypes values and the void*[] of their addresses that both platforms' launch calls take."""
    values = [t(v) for v, t in args]
    array = (ctypes.c_void_p * max(len(values), 1))(*[ctypes.addressof(v) for v in values])
    return values, array


def cache_dir() -> Path:
    root = os.environ.get("ROCMFORGE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "rocmforge")
    return Path(root) / "hip-kernels"


class Runtime(ABC):
    """One GPU through one platform: compile, load, launch, memory, stream, graphs."""
    platform: str = ""
    info: DeviceInfo
    # Whether the kernels' integer tile product (rf_mma_s8 in rf_prelude.h) exists here: the decode products then
    # run on it (rf_mmq_*). Must agree with the prelude's RF_HAS_MMA_S8.
    mma_s8: bool = False

    # -- kernels ---------------------------------------------------------------------------------------------
    @abstractmethod
    def compiler_version(self) -> str: ...

    @abstractmethod
    def compile(self, unit: Unit) -> bytes:
        """Code object for this device (raises KernelCompileError with the log)."""

    def cached_binary(self, unit: Unit) -> bytes:
        """Compiled code from the on-disk cache (or an ahead-of-time build), compiling on a miss."""
        for directory, compiler in self._binary_dirs():
            path = directory / f"{unit.key(self.info.arch, self.info.wave_size, compiler)}.bin"
            if path.is_file():
                return path.read_bytes()
        binary = self.compile(unit)
        directory = cache_dir()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / f"{unit.key(self.info.arch, self.info.wave_size, self.compiler_version())}.bin"
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(binary)
            tmp.replace(path)
        except OSError:
            pass  # a read-only cache only costs compile time
        return binary

    def _binary_dirs(self):
        yield cache_dir(), self.compiler_version()

    @abstractmethod
    def load(self, binary: bytes, names: list[str]) -> dict:
        """Load a code object; return kernel name -> function handle."""

    @abstractmethod
    def launch(self, fn, grid: tuple[int, int, int], block: tuple[int, int, int], args, shared: int = 0) -> None: ...

    # -- memory ----------------------------------------------------------------------------------------------
    @abstractmethod
    def alloc(self, nbytes: int) -> int:
        """Device memory; raises MemoryError when the device has no room."""

    @abstractmethod
    def free(self, ptr: int) -> None: ...

    @abstractmethod
    def mem_info(self) -> tuple[int, int]:
        """(free, total) bytes."""

    @abstractmethod
    def htod(self, ptr: int, array: np.ndarray) -> None:
        """Copy host -> device in stream order (the host buffer may be reused when this returns)."""

    @abstractmethod
    def dtoh(self, out: np.ndarray, ptr: int) -> None:
        """Copy device -> host after the queued work; returns when ``out`` holds the data."""

    @abstractmethod
    def synchronize(self) -> None: ...

    # -- graphs and timing -----------------------------------------------------------------------------------
    @abstractmethod
    def begin_capture(self) -> None: ...

    @abstractmethod
    def end_capture(self):
        """Stop capturing; return an executable graph for ``launch_graph``."""

    @abstractmethod
    def launch_graph(self, graph) -> None: ...

    @abstractmethod
    def destroy_graph(self, graph) -> None: ...

    @abstractmethod
    def elapsed_ms(self, fn) -> float:
        """Device time of the work ``fn()`` queues, measured with events."""


def open_runtime() -> Runtime:
    """The runtime of the first platform with a usable device (AMD first), or RuntimeUnavailable naming why each
    platform cannot run. The emulator runs only when ROCMFORGE_HIP_PLATFORM asks for it."""
    forced = os.environ.get("ROCMFORGE_HIP_PLATFORM", "").strip().lower()
    if forced and forced not in ("amd", "nvidia", "emulator"):
        raise RuntimeUnavailable(f"ROCMFORGE_HIP_PLATFORM must be 'amd', 'nvidia' or 'emulator', not {forced!r}")
    reasons = []
    for platform in [forced] if forced else ["amd", "nvidia"]:
        try:
            if platform == "amd":
                from rocmforge_rocm_hip.runtime_amd import AmdRuntime as cls
            elif platform == "nvidia":
                from rocmforge_rocm_hip.runtime_nvidia import NvidiaRuntime as cls
            else:
                from rocmforge_rocm_hip.runtime_emulator import EmulatorRuntime as cls
            return cls()
        except RuntimeUnavailable as exc:
            reasons.append(f"{platform}: {exc}")
    raise RuntimeUnavailable("; ".join(reasons))
