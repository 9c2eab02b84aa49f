"""HIP's NVIDIA platform: the .hip sources compiled by NVRTC to a cubin for the device's sm arch (with the
prelude supplying HIP's device API), loaded and launched through the CUDA driver API of cuda-bindings.

Cubins, not PTX: a newer NVRTC than the driver emits PTX the driver rejects, while its cubins load.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading

import numpy as np

from rocmforge_core.backend import DeviceInfo
from rocmforge_rocm_hip.runtime import KernelCompileError, Runtime, RuntimeUnavailable, pack_args
from rocmforge_rocm_hip.sources import Unit

MIN_CC = (7, 0)  # full-mask *_sync shuffles and independent thread scheduling
PDL_CC = (9, 0)  # programmatic dependent launch (griddepcontrol, rf_grid_begin in the prelude)


def nvrtc_version() -> str:
    from cuda.bindings import nvrtc
    _, major, minor = nvrtc.nvrtcVersion()
    return f"nvrtc-{major}.{minor}"


def nvrtc_compile(unit: Unit, arch: str, wave: int = 32) -> tuple[bytes, str]:
    """(cubin, log) for ``arch`` like 'sm_90'; needs no GPU. Raises KernelCompileError on errors."""
    from cuda.bindings import nvrtc
    src = unit.source().encode()
    err, prog = nvrtc.nvrtcCreateProgram(src, unit.file.encode(), 0, [], [])
    _check_nvrtc(err, "nvrtcCreateProgram")
    opts = [f"--gpu-architecture={arch}", "-std=c++17", f"-DRF_WAVE={wave}"]
    opts += [f"-D{k}={v}" for k, v in unit.defines]
    opts.append("--fmad=false" if unit.exact else "--fmad=true")
    try:
        (status,) = nvrtc.nvrtcCompileProgram(prog, len(opts), [o.encode() for o in opts])
        _, size = nvrtc.nvrtcGetProgramLogSize(prog)
        log = bytes(size)  # a fresh buffer: b" " * 1 is the interpreter's shared b" ", which the C call would overwrite
        nvrtc.nvrtcGetProgramLog(prog, log)
        log_text = log.rstrip(b"\0 ").decode(errors="replace")
        if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise KernelCompileError(f"NVRTC could not compile {unit.label} for {arch}:\n{log_text}")
        _, size = nvrtc.nvrtcGetCUBINSize(prog)
        cubin = bytes(size)
        nvrtc.nvrtcGetCUBIN(prog, cubin)
        return bytes(cubin), log_text
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def _check_nvrtc(err, what):
    from cuda.bindings import nvrtc
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise KernelCompileError(f"{what} failed: {err}")



def _in_context(method):
    """The driver API's current context is per thread: make the device's primary context current in whichever
    thread calls (a server runs the engine in its own thread), once per thread."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        if getattr(self._bound, "ctx", None) is None:
            self._ok(self.drv.cuCtxSetCurrent(self.ctx))
            self._bound.ctx = self.ctx
        return method(self, *args, **kwargs)
    return call

class NvidiaRuntime(Runtime):
    platform = "nvidia"

    def __init__(self, ordinal: int = 0) -> None:
        try:
            from cuda.bindings import driver
        except Exception as exc:
            raise RuntimeUnavailable(f"cuda-bindings is not installed ({exc})") from None
        self.drv = driver
        try:
            (err,) = driver.cuInit(0)
        except Exception as exc:  # no libcuda.so: no NVIDIA driver on this machine
            raise RuntimeUnavailable(f"no NVIDIA driver ({type(exc).__name__})") from None
        if err != driver.CUresult.CUDA_SUCCESS:
            raise RuntimeUnavailable(f"cuInit failed: {err.name}")
        err, count = driver.cuDeviceGetCount()
        if err != driver.CUresult.CUDA_SUCCESS or count <= ordinal:
            raise RuntimeUnavailable("no NVIDIA GPU found")
        self.dev = self._ok(driver.cuDeviceGet(ordinal))
        attr = driver.CUdevice_attribute
        major = self._ok(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, self.dev))
        minor = self._ok(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, self.dev))
        name = self._ok(driver.cuDeviceGetName(256, self.dev)).split(b"\0")[0].decode()
        if (major, minor) < MIN_CC:
            raise RuntimeUnavailable(f"{name} is sm_{major}{minor}; the kernels need sm_{MIN_CC[0]}{MIN_CC[1]} or newer")
        self.ctx = self._ok(driver.cuDevicePrimaryCtxRetain(self.dev))
        self._ok(driver.cuCtxSetCurrent(self.ctx))
        self._bound = threading.local()
        self._bound.ctx = self.ctx
        self.stream = self._ok(driver.cuStreamCreate(driver.CUstream_flags.CU_STREAM_NON_BLOCKING.value))
        sms = self._ok(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, self.dev))
        total = self._ok(driver.cuDeviceTotalMem(self.dev))
        self.sm = f"sm_{major}{minor}"
        self.mma_s8 = (major, minor) >= (8, 0) and os.environ.get("ROCMFORGE_HIP_MMA", "1") != "0"
        # Overlap each kernel's launch with the previous kernel (every kernel waits in rf_grid_begin): inside a
        # captured decode step this hides most of the gap between ~200 dependent kernels.
        # ROCMFORGE_HIP_PDL=0 turns it off, to measure it.
        self.pdl = (major, minor) >= PDL_CC and os.environ.get("ROCMFORGE_HIP_PDL", "1") != "0"
        self.info = DeviceInfo(name, self.sm, int(total), int(sms), 32, {"platform": "nvidia"})

    def _ok(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.drv.CUresult.CUDA_SUCCESS:
            _, msg = self.drv.cuGetErrorString(err)
            raise RuntimeError(f"CUDA driver call failed: {err.name} ({msg.decode() if msg else ''})")
        return rest[0] if len(rest) == 1 else (tuple(rest) if rest else None)

    # -- kernels ---------------------------------------------------------------------------------------------
    def compiler_version(self) -> str:
        return nvrtc_version()

    def compile(self, unit: Unit) -> bytes:
        return nvrtc_compile(unit, self.sm, 32)[0]

    @_in_context
    def load(self, binary: bytes, names: list[str]) -> dict:
        module = self._ok(self.drv.cuModuleLoadData(binary))
        return {n: self._ok(self.drv.cuModuleGetFunction(module, n.encode())) for n in names}

    @_in_context
    def launch(self, fn, grid, block, args, shared: int = 0) -> None:
        values, array = pack_args(args)
        if self.pdl:
            config = self._launch_config()
            config.gridDimX, config.gridDimY, config.gridDimZ = grid
            config.blockDimX, config.blockDimY, config.blockDimZ = block
            config.sharedMemBytes = shared
            (err,) = self.drv.cuLaunchKernelEx(config, fn, ctypes.addressof(array), 0)
        else:
            (err,) = self.drv.cuLaunchKernel(fn, grid[0], grid[1], grid[2], block[0], block[1], block[2], shared,
                                             self.stream, ctypes.addressof(array), 0)
        if err != self.drv.CUresult.CUDA_SUCCESS:
            raise RuntimeError(f"kernel launch failed: {err.name} (grid {grid}, block {block})")
        del values

    def _launch_config(self):
        """This thread's launch configuration with the programmatic-serialization attribute (made once)."""
        config = getattr(self._bound, "config", None)
        if config is None:
            drv = self.drv
            attr = drv.CUlaunchAttribute()
            attr.id = drv.CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
            attr.value.programmaticStreamSerializationAllowed = 1
            config = drv.CUlaunchConfig()
            config.hStream = self.stream
            config.attrs = [attr]
            config.numAttrs = 1
            self._bound.config = config
        return config

    # -- memory ----------------------------------------------------------------------------------------------
    @_in_context
    def alloc(self, nbytes: int) -> int:
        err, ptr = self.drv.cuMemAlloc(max(int(nbytes), 1))
        if err == self.drv.CUresult.CUDA_ERROR_OUT_OF_MEMORY:
            raise MemoryError(nbytes)
        if err != self.drv.CUresult.CUDA_SUCCESS:
            raise RuntimeError(f"cuMemAlloc({nbytes}) failed: {err.name}")
        return int(ptr)

    @_in_context
    def free(self, ptr: int) -> None:
        self.drv.cuMemFree(ptr)

    @_in_context
    def mem_info(self) -> tuple[int, int]:
        free, total = self._ok(self.drv.cuMemGetInfo())
        return int(free), int(total)

    @_in_context
    def htod(self, ptr: int, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        if array.nbytes:
            self._ok(self.drv.cuMemcpyHtoDAsync(ptr, array.ctypes.data, array.nbytes, self.stream))

    @_in_context
    def dtoh(self, out: np.ndarray, ptr: int) -> None:
        if out.nbytes:
            self._ok(self.drv.cuMemcpyDtoHAsync(out.ctypes.data, ptr, out.nbytes, self.stream))
        self.synchronize()

    @_in_context
    def synchronize(self) -> None:
        self._ok(self.drv.cuStreamSynchronize(self.stream))

    # -- graphs and timing -----------------------------------------------------------------------------------
    @_in_context
    def begin_capture(self) -> None:
        # Relaxed: the activation pool may allocate while a step is captured.
        mode = self.drv.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_RELAXED
        self._ok(self.drv.cuStreamBeginCapture(self.stream, mode))

    @_in_context
    def end_capture(self):
        graph = self._ok(self.drv.cuStreamEndCapture(self.stream))
        exe = self._ok(self.drv.cuGraphInstantiate(graph, 0))
        return (graph, exe)

    @_in_context
    def launch_graph(self, graph) -> None:
        self._ok(self.drv.cuGraphLaunch(graph[1], self.stream))

    @_in_context
    def destroy_graph(self, graph) -> None:
        self.drv.cuGraphExecDestroy(graph[1])
        self.drv.cuGraphDestroy(graph[0])

    @_in_context
    def elapsed_ms(self, fn) -> float:
        start = self._ok(self.drv.cuEventCreate(0))
        end = self._ok(self.drv.cuEventCreate(0))
        try:
            self._ok(self.drv.cuEventRecord(start, self.stream))
            fn()
            self._ok(self.drv.cuEventRecord(end, self.stream))
            self._ok(self.drv.cuEventSynchronize(end))
            return float(self._ok(self.drv.cuEventElapsedTime(start, end)))
        finally:
            self.drv.cuEventDestroy(start)
            self.drv.cuEventDestroy(end)
