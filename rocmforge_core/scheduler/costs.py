"""What a call site costs on a kernel, and what moving an activation between backends costs: measured when the
tuning cache has the (kernel, op, shape bucket, format, phase), estimated otherwise.

The estimate is a roofline, max(flops / peak flops, bytes / bandwidth) + launch overhead, with nominal figures per
kind of backend (a device, the fast host backend, the numpy reference). It only has to order candidates sensibly
until `rocmforge tune` measures them. A backend can give its own figures as a ``cost_hints`` attribute
(dict with keys flops, bytes_per_s, launch_s, copy_bytes_per_s, copy_latency_s).
"""

from __future__ import annotations

from dataclasses import dataclass

from rocmforge_core import ops
from rocmforge_core.ops import Kernel, Signature
from rocmforge_core.program import Site



@dataclass(frozen=True)
class Speed:
    flops: float
    bytes_per_s: float
    launch_s: float
    copy_bytes_per_s: float = 0.0   # to or from host memory; 0 for host backends (no copy at all)
    copy_latency_s: float = 0.0


NOMINAL = {
    "device": Speed(flops=30e12, bytes_per_s=1.5e12, launch_s=8e-6, copy_bytes_per_s=20e9, copy_latency_s=15e-6),
    "host": Speed(flops=200e9, bytes_per_s=30e9, launch_s=3e-6),
    "oracle": Speed(flops=50e9, bytes_per_s=10e9, launch_s=20e-6),
}


@dataclass(frozen=True)
class Cost:
    seconds: float
    measured: bool

    def __str__(self) -> str:
        return f"{_fmt_time(self.seconds)} {'measured' if self.measured else 'estimated'}"


class CostModel:
    def __init__(self, registry, tuning=None):
        self.registry = registry
        self.tuning = tuning  # a TuningCache, or None

    def speed(self, backend: str) -> Speed:
        be = self.registry.backends.get(backend)
        hints = getattr(be, "cost_hints", None)
        kind = "host" if be is None or be.is_host else "device"
        kind = "oracle" if be is not None and be.oracle else kind
        return Speed(**{**NOMINAL[kind].__dict__, **(hints or {})})

    def op(self, site: Site, kernel: Kernel) -> Cost:
        if self.tuning is not None:
            seconds = self.tuning.lookup(kernel, site)
            if seconds is not None:
                return Cost(seconds, True)
        speed = self.speed(kernel.backend)
        be = self.registry.backends.get(kernel.backend)
        flops, nbytes = work(site.sig, self.registry, dequantized=be is not None and be.oracle)
        return Cost(max(flops / speed.flops, nbytes / speed.bytes_per_s) + speed.launch_s, False)

    def copy(self, nbytes: int, source: str, dest: str) -> Cost:
        """Moving ``nbytes`` from backend ``source`` to ``dest``: free between host backends (they share numpy
        arrays); through host memory otherwise."""
        if source == dest or (self._is_host(source) and self._is_host(dest)):
            return Cost(0.0, False)
        if self.tuning is not None:
            seconds = self.tuning.copy_seconds(source, dest, nbytes)
            if seconds is not None:
                return Cost(seconds, True)
        total = 0.0
        for name in (source, dest):
            if not self._is_host(name):
                s = self.speed(name)
                total += s.copy_latency_s + nbytes / s.copy_bytes_per_s
        return Cost(total, False)

    def crosses(self, source: str, dest: str) -> bool:
        """Whether an activation made on ``source`` must be copied for ``dest``."""
        return source != dest and not (self._is_host(source) and self._is_host(dest))

    def _is_host(self, name: str) -> bool:
        be = self.registry.backends.get(name)
        return be is None or be.is_host


def work(sig: Signature, registry, dequantized: bool = False) -> tuple[float, float]:
    """(flops, bytes touched) of one call, roughly: the op's own estimate (OpSpec.work), with weights counted at 4
    bytes an element for a backend that dequantizes them at load."""
    formats = _DEQUANTIZED if dequantized else (registry.formats if registry is not None else None)
    return ops.spec(sig.op).work(sig, formats)


class _Dequantized:
    """Every GGUF type as 4 bytes an element (the reference backend holds weights as f32)."""
    class _F32:
        type_size, block_size = 4, 1

    def get(self, name):
        return self._F32


_DEQUANTIZED = _Dequantized()


def _fmt_time(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"
