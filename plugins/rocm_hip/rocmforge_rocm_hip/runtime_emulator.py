"""HIP's emulator platform, a test platform: the same .hip sources built by the host C++ compiler into a shared
library and run on the CPU with the GPU's execution semantics (blocks, fibers for threads, barriers, wave
shuffles at wave 32 or 64), so the whole hip backend runs, and is checked, where there is no GPU.

Picked only by ROCMFORGE_HIP_PLATFORM=emulator; ROCMFORGE_EMULATOR_WAVE=32|64 sets the wave size and
ROCMFORGE_EMULATOR_THREADS the OS threads a launch spreads its blocks over. The execution model is described in
emulator/rf_emu_scheduler.h and docs/HIP.md ("The emulator").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from functools import cached_property
from pathlib import Path

import numpy as np

from rocmforge_core.backend import DeviceInfo
from rocmforge_core.errors import BackendError
from rocmforge_rocm_hip.runtime import KernelCompileError, KernelError, Runtime, RuntimeUnavailable, cache_dir, \
    pack_args
from rocmforge_rocm_hip.sources import Unit

HEADERS = Path(__file__).resolve().parent / "emulator"
COMPILERS = ("c++", "g++", "clang++")
# -fno-strict-aliasing: the kernels read blocks through pointer casts, as GPU code does.
# -Wno-unknown-pragmas: GCC does not know `#pragma unroll`.
FLAGS = ("-O2", "-fPIC", "-shared", "-std=c++17", "-pthread", "-fvisibility=hidden", "-fno-strict-aliasing",
         "-fno-math-errno", "-Wall", "-Werror", "-Wno-unknown-pragmas")
POISON_MAX = 64 << 20  # fresh allocations up to this size are filled with 0xff (NaN as f32): unwritten reads show
KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(')
ERROR_SIZE = 4096
MAX_WORKERS = 64  # rf_emu::MAX_WORKERS
# Fiber stacks, one set per OS thread of a launch, shared by every unit and runtime of the process (each set
# maps a guard page per fiber; a set per unit would exhaust the process's memory mappings). Launches take turns.
_STACKS = {"base": 0, "sets": 0}
_LAUNCH_LOCK = threading.Lock()


class _Launch(ctypes.Structure):
    """rf_emu::Launch (emulator/rf_emu_scheduler.h)."""
    _fields_ = [("grid", ctypes.c_uint32 * 3), ("block", ctypes.c_uint32 * 3), ("shared_bytes", ctypes.c_uint32),
                ("threads", ctypes.c_int32), ("nargs", ctypes.c_int32), ("args", ctypes.c_void_p),
                ("sizes", ctypes.c_void_p), ("kinds", ctypes.c_char_p), ("stacks", ctypes.c_void_p),
                ("error", ctypes.c_void_p), ("error_size", ctypes.c_int64)]


class _Kernel:
    """A kernel of a loaded unit: its launch-table entry."""

    def __init__(self, name: str, entry) -> None:
        self.name, self.entry = name, entry


def _kind(ctype) -> bytes:
    if ctype is ctypes.c_void_p:
        return b"p"
    return b"f" if ctype in (ctypes.c_float, ctypes.c_double) else b"i"


def host_compiler() -> str | None:
    """The host C++ compiler: $CXX, else the first of c++, g++, clang++ on PATH."""
    for name in ([os.environ["CXX"]] if os.environ.get("CXX") else []) + list(COMPILERS):
        path = shutil.which(name)
        if path:
            return path
    return None


class EmulatorRuntime(Runtime):
    platform = "emulator"
    mma_s8 = True  # the prelude's shuffle version of rf_mma_s8

    def __init__(self) -> None:
        self.cxx = host_compiler()
        if self.cxx is None:
            raise RuntimeUnavailable("no host C++ compiler (set CXX, or install c++, g++ or clang++)")
        wave = os.environ.get("ROCMFORGE_EMULATOR_WAVE", "32").strip()
        if wave not in ("32", "64"):
            raise RuntimeUnavailable(f"ROCMFORGE_EMULATOR_WAVE must be 32 or 64, not {wave!r}")
        threads = os.environ.get("ROCMFORGE_EMULATOR_THREADS", "").strip()
        if threads and not (threads.isdigit() and 1 <= int(threads) <= MAX_WORKERS):
            raise RuntimeUnavailable(f"ROCMFORGE_EMULATOR_THREADS must be 1 to {MAX_WORKERS}, not {threads!r}")
        self.threads = int(threads) if threads else min(4, os.cpu_count() or 1)
        self.libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.libc.posix_memalign.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_size_t]
        self.libc.free.argtypes = [ctypes.c_void_p]
        self.capture: list | None = None  # the launches recorded while capturing
        self.info = DeviceInfo("emulator (CPU)", "emu", self.mem_info()[1], os.cpu_count() or 1, int(wave),
                               {"platform": "emulator", "compiler": self.cxx})

    # -- kernels ---------------------------------------------------------------------------------------------
    @cached_property
    def _version(self) -> str:
        out = subprocess.run([self.cxx, "--version"], capture_output=True, text=True).stdout
        h = hashlib.sha256(" ".join(FLAGS).encode())
        for header in sorted(HEADERS.glob("*.h")):  # the headers are part of every build
            h.update(header.read_bytes())
        return f"emulator-{h.hexdigest()[:12]}-{out.splitlines()[0] if out else self.cxx}"

    def compiler_version(self) -> str:
        return self._version

    def compile(self, unit: Unit) -> bytes:
        defines = [f"-DRF_WAVE={self.info.wave_size}"] + [f"-D{k}={v}" for k, v in unit.defines]
        with tempfile.TemporaryDirectory(prefix="rocmforge-emu-") as tmp:
            tmp = Path(tmp)
            (tmp / "unit.hip").write_text(unit.source())
            (tmp / "scan.cpp").write_text('#include "rf_emu_device.h"\n#include "unit.hip"\n')
            scan = self._run([self.cxx, "-E", "-P", "-DRF_EMU_SCAN", *defines, f"-I{HEADERS}", str(tmp / "scan.cpp")],
                             unit)
            names = KERNEL.findall(scan)
            table = "".join(f"RF_EMU_ENTRY({n})\n" for n in names)
            (tmp / "unit.cpp").write_text(f'#include "rf_emu_device.h"\n#include "unit.hip"\n{table}')
            fp = "-ffp-contract=off" if unit.exact else "-ffp-contract=fast"
            self._run([self.cxx, *FLAGS, fp, *defines, f"-I{HEADERS}", str(tmp / "unit.cpp"), "-o",
                       str(tmp / "unit.so")], unit)
            return (tmp / "unit.so").read_bytes()

    def _run(self, cmd: list[str], unit: Unit) -> str:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise KernelCompileError(f"{Path(self.cxx).name} could not build {unit.label} for the emulator:\n"
                                     f"{done.stderr.strip()}")
        return done.stdout

    def load(self, binary: bytes, names: list[str]) -> dict:
        directory = cache_dir() / "emulator"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{hashlib.sha256(binary).hexdigest()[:40]}.so"
        if not path.is_file():  # written whole under a unique name first: units may be loaded from several threads
            with tempfile.NamedTemporaryFile(dir=directory, suffix=".tmp", delete=False) as tmp:
                tmp.write(binary)
            os.replace(tmp.name, path)
        lib = ctypes.CDLL(str(path))
        with _LAUNCH_LOCK:
            if _STACKS["sets"] < self.threads:
                lib.rf_emu_stacks.argtypes, lib.rf_emu_stacks.restype = [ctypes.c_int], ctypes.c_void_p
                base = lib.rf_emu_stacks(self.threads)
                if not base:
                    raise MemoryError(f"no room for the emulator's fiber stacks ({self.threads} sets)")
                _STACKS.update(base=base, sets=self.threads)
        kernels = {}
        for name in names:
            try:
                entry = getattr(lib, f"rf_emu_launch_{name}")
            except AttributeError:
                raise KernelCompileError(f"kernel {name} is missing from the emulator build {path}") from None
            entry.argtypes, entry.restype = [ctypes.POINTER(_Launch)], ctypes.c_int
            kernels[name] = _Kernel(name, entry)
        return kernels

    def launch(self, fn, grid, block, args, shared: int = 0) -> None:
        packed = pack_args(args)
        sizes = (ctypes.c_int32 * max(len(args), 1))(*[ctypes.sizeof(t) for _, t in args])
        kinds = b"".join(_kind(t) for _, t in args)
        call = (fn, tuple(grid), tuple(block), int(shared), packed, sizes, kinds)
        if self.capture is not None:  # recorded with copies of the arguments, run by launch_graph
            self.capture.append(call)
        else:
            self._execute(call)

    def _execute(self, call) -> None:
        fn, grid, block, shared, (values, array), sizes, kinds = call
        error = ctypes.create_string_buffer(ERROR_SIZE)
        desc = _Launch((ctypes.c_uint32 * 3)(*grid), (ctypes.c_uint32 * 3)(*block), shared, self.threads,
                       len(values), ctypes.addressof(array), ctypes.addressof(sizes), kinds, _STACKS["base"],
                       ctypes.addressof(error), ERROR_SIZE)
        with _LAUNCH_LOCK:
            failed = fn.entry(ctypes.byref(desc))
        if failed:
            raise KernelError(error.value.decode(errors="replace"))

    # -- memory ----------------------------------------------------------------------------------------------
    def alloc(self, nbytes: int) -> int:
        nbytes = max(int(nbytes), 1)
        if nbytes > self.mem_info()[0]:
            raise MemoryError(nbytes)
        ptr = ctypes.c_void_p()
        if self.libc.posix_memalign(ctypes.byref(ptr), 256, nbytes) != 0 or not ptr.value:
            raise MemoryError(nbytes)
        if nbytes <= POISON_MAX:
            ctypes.memset(ptr.value, 0xFF, nbytes)
        return ptr.value

    def free(self, ptr: int) -> None:
        self.libc.free(ptr)

    def mem_info(self) -> tuple[int, int]:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):  # free memory plus what the kernel can reclaim
                    free = int(line.split()[1]) * 1024
        except OSError:
            pass
        return int(free), int(total)

    def _not_capturing(self, what: str) -> None:
        if self.capture is not None:
            raise BackendError(f"{what} while a graph is being captured (a captured step must only launch kernels)")

    def htod(self, ptr: int, array: np.ndarray) -> None:
        self._not_capturing("a copy to the device")
        array = np.ascontiguousarray(array)
        if array.nbytes:
            ctypes.memmove(ptr, array.ctypes.data, array.nbytes)

    def dtoh(self, out: np.ndarray, ptr: int) -> None:
        self._not_capturing("a copy from the device")
        if out.nbytes:
            ctypes.memmove(out.ctypes.data, ptr, out.nbytes)

    def synchronize(self) -> None:
        self._not_capturing("a synchronization")  # launches run to completion before they return

    # -- graphs and timing -----------------------------------------------------------------------------------
    def begin_capture(self) -> None:
        self._not_capturing("another capture")
        self.capture = []

    def end_capture(self):
        graph, self.capture = self.capture, None
        return graph

    def launch_graph(self, graph) -> None:
        for call in graph:
            self._execute(call)

    def destroy_graph(self, graph) -> None:
        graph.clear()

    def elapsed_ms(self, fn) -> float:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3
