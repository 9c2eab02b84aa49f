"""Setting up backends before a model loads: which backend to prefer when none is named, and how many threads
the host backends' kernels use. Shared by ``rocmforge run``/``bench``/``explain`` and the server."""

from __future__ import annotations

import sys

from rocmforge_core.errors import RocmforgeError
from rocmforge_core.registry import get_registry


def pick_backend(requested: str | None, profile=None) -> str | None:
    """The backend to prefer: the one requested; else none when a profile is given (the profile names its
    default); else "cpu" when it can run here, else the numpy "reference" backend, with a note on stderr."""
    if requested:
        return requested
    if profile:
        return None
    cpu = get_registry().backends.get("cpu")
    if cpu is not None and cpu.available():
        return "cpu"
    reason = "is not installed" if cpu is None else f"cannot run here ({cpu.available().reason})"
    print(f"rocmforge: note: the cpu backend {reason}; using the slow numpy reference backend "
          "(pip install rocmforge-cpu-simd, or make install)", file=sys.stderr)
    return "reference"


def configure_threads(threads: int | None) -> None:
    """Apply --threads to every backend (numba's thread count is per calling thread: call this from the thread
    that will run the model)."""
    if threads is not None and threads < 1:
        raise RocmforgeError(f"--threads must be at least 1, got {threads}")
    for backend in get_registry().backends.values():
        backend.configure(threads=threads)
