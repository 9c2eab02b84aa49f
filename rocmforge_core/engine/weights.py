"""A model's tensors: host views of the GGUF file, and their copies made resident on each backend that uses them."""

from __future__ import annotations

from typing import Any

from rocmforge_core.errors import GGUFError
from rocmforge_core.formats import Weight, dequantize_weight


class Weights:
    def __init__(self, gguf, registry, arch_name: str):
        self.gguf, self.registry, self.arch_name = gguf, registry, arch_name
        self._host: dict[str, Weight] = {}
        self._resident: dict[tuple[str, str, str], Any] = {}  # (kind, name, backend) -> tensor or Weight
        self.on_upload = None  # called with each uploaded tensor's file size in bytes (load progress)

    def has(self, name: str) -> bool:
        return name in self.gguf.tensors

    def require(self, names) -> None:
        missing = [n for n in names if not self.has(n)]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise GGUFError(f"{self.gguf.path}: tensor {missing[0]}{more} is missing; architecture "
                            f"{self.arch_name!r} needs it")

    def host(self, name: str) -> Weight:
        if name not in self._host:
            self.require([name])
            self._host[name] = self.gguf.weight(name, self.registry)
        return self._host[name]

    def matrix(self, name: str, backend) -> Weight:
        """The weight in its stored format, resident on ``backend`` (repacked if its format offers a layout)."""
        key = ("matrix", name, backend.name)
        if key not in self._resident:
            w = self.host(name)
            self._resident[key] = backend.upload_weight(w)
            self._uploaded(name)
        return self._resident[key]

    def dense(self, name: str, backend):
        """The weight's exact f32 values as a tensor on ``backend``."""
        key = ("dense", name, backend.name)
        if key not in self._resident:
            self._resident[key] = backend.from_host(dequantize_weight(self.host(name)))
            self._uploaded(name)
        return self._resident[key]

    def _uploaded(self, name: str) -> None:
        if self.on_upload:
            self.on_upload(self.gguf.info(name).nbytes)

    def resident_bytes(self) -> int:
        return sum(int(getattr(getattr(v, "data", v), "nbytes", 0)) for v in self._resident.values())
