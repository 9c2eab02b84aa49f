"""The backend interface: devices, memory, synchronization. Kernels are registered separately (``Kernel``).

A backend's tensors are whatever it chooses (numpy arrays for host backends, device arrays for GPUs); they must
expose ``shape``, a ``dtype_name`` or numpy ``dtype``, and ``reshape(*shape)`` returning a view.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from rocmforge_core.formats import Weight
from rocmforge_core.ops import Verdict, yes


NUMPY_DTYPES = {"f32": np.float32, "f16": np.float16, "f64": np.float64, "i32": np.int32, "i64": np.int64,
                "u8": np.uint8}


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    arch: str
    memory_bytes: int
    compute_units: int
    wave_size: int = 0
    extra: dict = field(default_factory=dict)


class Backend(ABC):
    name: str = ""
    is_host: bool = False  # tensors are numpy arrays in host memory
    # Runs the ops' numpy references on exact f32 weights: the slow oracle, the last of the fallbacks, and what
    # cost estimates count weights for at 4 bytes an element.
    oracle: bool = False

    def available(self) -> Verdict:
        """Whether this backend can run here, and if not, why (no runtime, no device, unsupported arch)."""
        return yes()

    @abstractmethod
    def devices(self) -> list[DeviceInfo]: ...

    def configure(self, threads: int | None = None) -> None:
        """Set how many host threads this backend's kernels use (``--threads``; None = its default). Backends
        whose kernels run no host threads ignore it."""

    @abstractmethod
    def from_host(self, array: np.ndarray):
        """A tensor on this backend holding a copy of ``array``."""

    @abstractmethod
    def to_host(self, tensor) -> np.ndarray: ...

    @abstractmethod
    def empty(self, shape: tuple[int, ...], dtype: str):
        """An uninitialized tensor of a dtype of NUMPY_DTYPES ('f32', 'f16', 'f64', 'i32', 'i64', 'u8')."""

    def upload_weight(self, weight: Weight) -> Weight:
        """Make a host weight (raw GGUF blocks) resident here, repacked when its format offers this backend a
        layout of its own."""
        repack = weight.format.repackers.get(self.name)
        weight = repack(weight) if repack else weight
        return weight if self.is_host else weight.with_data(self.from_host(np.asarray(weight.data)), weight.layout)

    def copy_from(self, tensor, source: "Backend"):
        """Bring a tensor of another backend here (through host memory unless a backend knows better)."""
        return self.from_host(source.to_host(tensor))

    def all_finite(self, tensor) -> bool:
        """Whether every value of ``tensor`` is finite (the run-time guard asks this of each step's logits; a
        device backend can answer without copying them to the host)."""
        return bool(np.isfinite(self.to_host(tensor)).all())

    def write(self, tensor, array: np.ndarray) -> None:
        """Overwrite an existing tensor with host data (per-step inputs live in tensors allocated once, so that a
        captured decode step can be replayed with new inputs)."""
        raise NotImplementedError

    def capture(self, step):
        """Record the launches ``step()`` makes and return a callable that replays them, or None when this
        backend cannot capture (host backends run ops directly)."""
        return None

    def owns(self, tensor) -> bool:
        return isinstance(tensor, np.ndarray) if self.is_host else not isinstance(tensor, np.ndarray)

    def synchronize(self) -> None:
        """Wait for queued work; host backends run synchronously."""

    def compile_seconds(self) -> float:
        """Wall seconds this process has spent compiling this backend's kernels on first use (the engine reports
        them apart from prefill and decode); 0 for backends that compile nothing at run time."""
        return 0.0

    def compile_ahead(self) -> int:
        """Compile now what this backend would still compile on first use once every kernel has run once (variants
        it picks between at run time); ``rocmforge warmup`` calls it. Returns the number of builds made."""
        return 0


class HostBackend(Backend):
    """Common memory handling of backends whose tensors are numpy arrays."""
    is_host = True

    def from_host(self, array: np.ndarray) -> np.ndarray:
        return np.array(array, copy=True)

    def to_host(self, tensor) -> np.ndarray:
        return np.asarray(tensor)

    def write(self, tensor, array: np.ndarray) -> None:
        tensor[...] = array

    def empty(self, shape, dtype):
        return np.empty(shape, dtype=NUMPY_DTYPES[dtype])
