"""HIP's AMD platform through hip-python: hiprtc compiles the .hip sources for the device's gfx arch (or an
ahead-of-time build from ROCMFORGE_HIP_AOT is loaded), hipModuleLaunchKernel launches them on one stream."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from rocmforge_core.backend import DeviceInfo
from rocmforge_rocm_hip.aot import AOT_COMPILER, wave_size
from rocmforge_rocm_hip.runtime import KernelCompileError, Runtime, RuntimeUnavailable, pack_args
from rocmforge_rocm_hip.sources import Unit


class AmdRuntime(Runtime):
    platform = "amd"

    def __init__(self, ordinal: int = 0) -> None:
        try:
            from hip import hip, hiprtc
        except Exception as exc:
            raise RuntimeUnavailable(f"hip-python is not installed ({type(exc).__name__}); "
                                     "pip install rocmforge-rocm-hip[amd]") from None
        self.hip, self.rtc = hip, hiprtc
        try:
            err, count = hip.hipGetDeviceCount()
        except Exception as exc:  # libamdhip64.so not found: no ROCm runtime
            raise RuntimeUnavailable(f"no ROCm runtime ({exc})") from None
        if err != hip.hipError_t.hipSuccess or count <= ordinal:
            raise RuntimeUnavailable("no AMD GPU found")
        self._ok(hip.hipSetDevice(ordinal))
        props = hip.hipDeviceProp_t()
        self._ok(hip.hipGetDeviceProperties(props, ordinal))
        arch = _text(props.gcnArchName).split(":")[0]  # "gfx90a:sramecc+:xnack-" -> "gfx90a"
        name = _text(props.name) or arch
        self.stream = self._ok(hip.hipStreamCreateWithFlags(1))  # hipStreamNonBlocking
        wave = int(props.warpSize) or wave_size(arch)
        self.info = DeviceInfo(name, arch, int(props.totalGlobalMem), int(props.multiProcessorCount), wave,
                               {"platform": "amd"})

    def _ok(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.hip.hipError_t.hipSuccess:
            raise RuntimeError(f"HIP call failed: {err}")
        return rest[0] if len(rest) == 1 else (tuple(rest) if rest else None)

    # -- kernels ---------------------------------------------------------------------------------------------
    def compiler_version(self) -> str:
        err, major, minor = self.rtc.hiprtcVersion()
        return f"hiprtc-{major}.{minor}"

    def _binary_dirs(self):
        aot = os.environ.get("ROCMFORGE_HIP_AOT")
        if aot:
            yield Path(aot), AOT_COMPILER
        yield from super()._binary_dirs()

    def compile(self, unit: Unit) -> bytes:
        rtc = self.rtc
        err, prog = rtc.hiprtcCreateProgram(unit.source().encode(), unit.file.encode(), 0, [], [])
        if err != rtc.hiprtcResult.HIPRTC_SUCCESS:
            raise KernelCompileError(f"hiprtcCreateProgram failed: {err}")
        opts = [f"--offload-arch={self.info.arch}", "-O3", "-std=c++17", f"-DRF_WAVE={self.info.wave_size}",
                "-ffp-contract=off" if unit.exact else "-ffp-contract=fast"]
        opts += [f"-D{k}={v}" for k, v in unit.defines]
        try:
            (status,) = rtc.hiprtcCompileProgram(prog, len(opts), [o.encode() for o in opts])
            if status != rtc.hiprtcResult.HIPRTC_SUCCESS:
                _, size = rtc.hiprtcGetProgramLogSize(prog)
                log = bytearray(size)
                rtc.hiprtcGetProgramLog(prog, log)
                raise KernelCompileError(f"hiprtc could not compile {unit.label} for {self.info.arch}:\n"
                                         f"{bytes(log).rstrip(bytes(1)).decode(errors='replace')}")
            _, size = rtc.hiprtcGetCodeSize(prog)
            code = bytearray(size)
            rtc.hiprtcGetCode(prog, code)
            return bytes(code)
        finally:
            rtc.hiprtcDestroyProgram(prog)

    def load(self, binary: bytes, names: list[str]) -> dict:
        module = self._ok(self.hip.hipModuleLoadData(binary))
        return {n: self._ok(self.hip.hipModuleGetFunction(module, n.encode())) for n in names}

    def launch(self, fn, grid, block, args, shared: int = 0) -> None:
        values, array = pack_args(args)
        self._ok(self.hip.hipModuleLaunchKernel(fn, *grid, *block, shared, self.stream,
                                                ctypes.addressof(array), None))
        del values

    # -- memory ----------------------------------------------------------------------------------------------
    def alloc(self, nbytes: int) -> int:
        err, ptr = self.hip.hipMalloc(max(int(nbytes), 1))
        if err == self.hip.hipError_t.hipErrorOutOfMemory:
            raise MemoryError(nbytes)
        if err != self.hip.hipError_t.hipSuccess:
            raise RuntimeError(f"hipMalloc({nbytes}) failed: {err}")
        return int(ptr)

    def free(self, ptr: int) -> None:
        self.hip.hipFree(ptr)

    def mem_info(self) -> tuple[int, int]:
        free, total = self._ok(self.hip.hipMemGetInfo())
        return int(free), int(total)

    def htod(self, ptr: int, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        if array.nbytes:
            self._ok(self.hip.hipMemcpyHtoDAsync(ptr, array.ctypes.data, array.nbytes, self.stream))
            # pageable source: make the copy complete before the caller may reuse the buffer
            self.synchronize()

    def dtoh(self, out: np.ndarray, ptr: int) -> None:
        if out.nbytes:
            self._ok(self.hip.hipMemcpyDtoHAsync(out.ctypes.data, ptr, out.nbytes, self.stream))
        self.synchronize()

    def synchronize(self) -> None:
        self._ok(self.hip.hipStreamSynchronize(self.stream))

    # -- graphs and timing -----------------------------------------------------------------------------------
    def begin_capture(self) -> None:
        self._ok(self.hip.hipStreamBeginCapture(self.stream, self.hip.hipStreamCaptureMode.hipStreamCaptureModeRelaxed))

    def end_capture(self):
        graph = self._ok(self.hip.hipStreamEndCapture(self.stream))
        return graph, self._ok(self.hip.hipGraphInstantiateWithFlags(graph, 0))

    def launch_graph(self, graph) -> None:
        self._ok(self.hip.hipGraphLaunch(graph[1], self.stream))

    def destroy_graph(self, graph) -> None:
        self.hip.hipGraphExecDestroy(graph[1])
        self.hip.hipGraphDestroy(graph[0])

    def elapsed_ms(self, fn) -> float:
        start, end = self._ok(self.hip.hipEventCreate()), self._ok(self.hip.hipEventCreate())
        try:
            self._ok(self.hip.hipEventRecord(start, self.stream))
            fn()
            self._ok(self.hip.hipEventRecord(end, self.stream))
            self._ok(self.hip.hipEventSynchronize(end))
            return float(self._ok(self.hip.hipEventElapsedTime(start, end)))
        finally:
            self.hip.hipEventDestroy(start)
            self.hip.hipEventDestroy(end)


def _text(value) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).split(b"\0")[0].decode(errors="replace")
    return str(value)
