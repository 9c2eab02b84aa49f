"""The ``hip`` backend: device tensors, weight uploads, per-step inputs, graph capture, on either HIP platform."""

from __future__ import annotations

import numpy as np

from rocmforge_core.backend import Backend, DeviceInfo
from rocmforge_core.errors import BackendError
from rocmforge_core.formats import Weight
from rocmforge_core.ops import Verdict, no, yes
from rocmforge_rocm_hip.memory import NAMES, NUMPY, Arena, DeviceTensor, Pool
from rocmforge_rocm_hip.runtime import I64, PTR, Runtime, RuntimeUnavailable, open_runtime
from rocmforge_rocm_hip.sources import ELEMENTWISE, MMQ_TILES, Unit, has_dot8_q8_source, mma_unit

# AMD targets every kernel is compile-checked for in CI (tests/hip); others are refused rather than tried.
SUPPORTED_AMD = ("gfx90a", "gfx942", "gfx1100", "gfx1201")
FINITE_BLOCKS = 128  # at most this many blocks check a tensor for non-finite values


class Graph:
    """A captured step: calling it replays every launch with the same pointers. Holds the private pool whose
    blocks the captured kernels use."""

    def __init__(self, runtime: Runtime, graph, pool: Pool) -> None:
        self.runtime, self.graph, self.pool = runtime, graph, pool

    def __call__(self) -> None:
        self.runtime.launch_graph(self.graph)

    def __del__(self) -> None:
        if self.graph is not None:
            self.runtime.destroy_graph(self.graph)
            self.graph = None


class HipBackend(Backend):
    name = "hip"

    def __init__(self) -> None:
        self._runtime: Runtime | None = None
        self._unavailable: str = ""
        self._modules: dict[Unit, dict] = {}
        self.pool: Pool | None = None
        self.arena: Arena | None = None
        self._blas = False  # not looked for yet
        # (weakref to an activation, its 8-bit copy, scales): q, k and v (gate and up) share one input, quantized
        # once. Dropped whenever a tensor may change under it (write) and around captures.
        self.q8_cache = None
        self._finite_scratch = None
        # Launches deferred while a step is captured, so that neighbours become one launch: decode products of one
        # input (q, k, v; gate, up; a product and the residual add after it), the ropes of q and k (ops.Product,
        # ops.Rope). Any other launch, or the end of the capture, sends them.
        self.capturing = False
        self.pending: list = []

    # -- runtime ---------------------------------------------------------------------------------------------
    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            if self._unavailable:
                raise BackendError(f"the hip backend cannot run here: {self._unavailable}")
            try:
                rt = open_runtime()
            except RuntimeUnavailable as exc:
                self._unavailable = str(exc)
                raise BackendError(f"the hip backend cannot run here: {exc}") from None
            if rt.platform == "amd" and rt.info.arch not in SUPPORTED_AMD:
                self._unavailable = (f"{rt.info.name} is {rt.info.arch}; the HIP kernels are built and checked for "
                                     f"{', '.join(SUPPORTED_AMD)}")
                raise BackendError(f"the hip backend cannot run here: {self._unavailable}")
            self._runtime = rt
            self.pool = Pool(rt)
            self.arena = Arena(rt)
        return self._runtime

    def available(self) -> Verdict:
        try:
            info = self.runtime.info
        except BackendError:
            return no(self._unavailable)
        return yes(f"{info.name} ({self._runtime.platform} platform, {info.arch}, wave {info.wave_size})")

    def devices(self) -> list[DeviceInfo]:
        return [self.runtime.info] if self.available() else []

    @property
    def blas(self):
        """The vendor BLAS on this runtime's stream, or None (see blas.py)."""
        if self._blas is False:
            from rocmforge_rocm_hip.blas import open_blas
            self._blas = open_blas(self.runtime)
        return self._blas

    def functions(self, unit: Unit) -> dict:
        """Kernel name -> function of a compiled unit (compiled once per process, cached on disk)."""
        fns = self._modules.get(unit)
        if fns is None:
            rt = self.runtime
            fns = rt.load(rt.cached_binary(unit), kernel_names(unit, rt.mma_s8))
            self._modules[unit] = fns
        return fns

    def launch(self, unit: Unit, kernel: str, grid, block, args, shared: int = 0) -> None:
        grid = tuple(int(g) for g in grid) + (1,) * (3 - len(grid))
        block = tuple(int(b) for b in block) + (1,) * (3 - len(block))
        if min(grid) <= 0:
            return
        if self.pending:
            self.flush()
        self.runtime.launch(self.functions(unit)[kernel], grid, block, args, shared)

    def defer(self, item) -> None:
        """Queue a launch (an object with ``joins`` and ``launch``, see ops.Product) while capturing."""
        pending = self.pending
        if pending and (type(pending[0]) is not type(item) or not pending[0].joins(item, len(pending))):
            self.flush()
        self.pending.append(item)

    def flush(self) -> None:
        items, self.pending = self.pending, []
        if items:
            type(items[0]).launch(self, items)

    # -- memory ----------------------------------------------------------------------------------------------
    def empty(self, shape, dtype: str) -> DeviceTensor:
        if dtype not in NUMPY:
            raise BackendError(f"hip tensors hold {', '.join(NUMPY)}, not {dtype!r}")
        shape = tuple(int(s) for s in shape)
        n = int(np.prod(shape, dtype=np.int64)) * np.dtype(NUMPY[dtype]).itemsize
        self.runtime  # opens the device (or raises why not)
        block = self.pool.alloc(n, what=f"a {dtype}{list(shape)} tensor")
        return DeviceTensor(block.ptr, shape, dtype, block)

    def from_host(self, array: np.ndarray) -> DeviceTensor:
        array = np.ascontiguousarray(array)
        if array.dtype not in NAMES:
            raise BackendError(f"cannot put a {array.dtype} array on the hip backend")
        tensor = self.empty(array.shape, NAMES[array.dtype])
        self.runtime.htod(tensor.ptr, array)
        return tensor

    def to_host(self, tensor) -> np.ndarray:
        if isinstance(tensor, Weight):
            tensor = tensor.data
        out = np.empty(tensor.shape, dtype=NUMPY[tensor.dtype_name])
        self.runtime.dtoh(out, tensor.ptr)
        return out

    def all_finite(self, tensor) -> bool:
        if tensor.dtype_name != "f32":
            return super().all_finite(tensor)
        if self._finite_scratch is None:  # per-block counts, a block counter that the kernel keeps at 0, the answer
            self._finite_scratch = (self.from_host(np.zeros(FINITE_BLOCKS, np.float32)),
                                    self.from_host(np.zeros(1, np.int32)), self.empty((1,), "i32"))
        partial, done, flag = self._finite_scratch
        blocks = max(1, min(FINITE_BLOCKS, tensor.size // 2048))
        self.launch(ELEMENTWISE, "rf_all_finite", (blocks,), (256,),
                    [(tensor.ptr, PTR), (tensor.size, I64), (flag.ptr, PTR), (partial.ptr, PTR), (done.ptr, PTR)])
        return bool(self.to_host(flag)[0])

    def write(self, tensor: DeviceTensor, array: np.ndarray) -> None:
        self.q8_cache = None
        array = np.ascontiguousarray(array, dtype=NUMPY[tensor.dtype_name])
        if array.size != tensor.size:
            raise BackendError(f"write of {array.size} values into a hip tensor of shape {tensor.shape}")
        self.runtime.htod(tensor.ptr, array)

    def upload_weight(self, weight: Weight) -> Weight:
        repack = weight.format.repackers.get(self.name)
        weight = repack(weight) if repack else weight
        raw = np.ascontiguousarray(weight.data)  # reads the memory-mapped file once
        self.runtime
        ptr = self.arena.alloc(raw.nbytes, what=f"weight {weight.name}")
        self.runtime.htod(ptr, raw)
        return weight.with_data(DeviceTensor(ptr, raw.shape, NAMES[raw.dtype], self.arena), weight.layout)

    def owns(self, tensor) -> bool:
        if isinstance(tensor, Weight):
            tensor = tensor.data
        return isinstance(tensor, DeviceTensor)

    def synchronize(self) -> None:
        self.runtime.synchronize()

    # -- graphs ----------------------------------------------------------------------------------------------
    def capture(self, step) -> Graph:
        """Record the launches of ``step()`` into a graph. Run the step once before capturing so that its kernels
        are compiled and loaded; inputs must already live in tensors that ``write`` refills between replays."""
        rt = self.runtime
        rt.synchronize()
        self.q8_cache = None  # the graph must contain the quantization it relies on
        private, saved = Pool(rt), self.pool
        self.pool = private
        rt.begin_capture()
        self.capturing = True
        try:
            step()
            self.flush()
        except BaseException:
            self.pending = []
            try:
                rt.destroy_graph(rt.end_capture())
            except Exception:
                pass
            raise
        finally:
            self.capturing = False
            self.pool = saved
            self.q8_cache = None
        return Graph(rt, rt.end_capture(), private)


def kernel_names(unit: Unit, mma_s8: bool = False) -> list[str]:
    """The kernels a unit defines; ``mma_s8``: on a target with the integer tile product (Runtime.mma_s8)."""
    dot8 = unit.file == "quant.hip" and has_dot8_q8_source(unit.fmt_source)
    extra = ["rf_matvec_q8", "rf_matvec_q8_multi", "rf_matvec_q8_batch", "rf_matvec_q8_batch_multi"] if dot8 else []
    if mma_s8 and dot8 and mma_unit(unit.fmt_source):
        extra += [f"rf_mm{v}{multi}" for v in ["v"] + [f"q_{rt}_{nt}" for rt, nt in MMQ_TILES]
                  for multi in ("", "_multi")]
    return extra + {
        "elementwise.hip": ["rf_add", "rf_scale", "rf_activation", "rf_rmsnorm", "rf_rope", "rf_transpose", "rf_to_f16",
                            "rf_quantize_q8", "rf_all_finite"],
        "quant.hip": ["rf_rows_f32", "rf_rows_f16", "rf_matmul_tiled", "rf_matvec"],
        "attention.hip": ["rf_kv_write"] + [f"rf_attention_g{g}" for g in (1, 2, 4, 8)] + ["rf_attention_combine"],
        "sample.hip": ["rf_sample", "rf_logprobs"],
    }[unit.file]
