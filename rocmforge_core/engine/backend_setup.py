"""Setting up backends before a model loads: which backend to prefer when none is named, and how many threads
the host backends' kernels use. Shared by ``rocmforge run``/``bench``/``explain`` and the server."""

from __future__ import annotations

import sys

from rocmforge_core.errors import RocmforgeError
from rocmforge_core.registry import get_registry


def pick_backend(requested: str | None, profile=None) -> str | None:
    """The backend to prefer: the one requested; else none when a profile is given (the profile names its
    default); else the first fast host backend (cpu) that can run here, else the numpy oracle ("reference"),
    with a note on stderr saying why."""
    if requested:
        return requested
    if profile:
        return None
    registry = get_registry()
    fallbacks = registry.fallbacks()
    fast = [n for n in fallbacks if not registry.backends[n].oracle]
    for name in fast:
        if registry.backends[name].available():
            return name
    reasons = "; ".join(f"{n} cannot run here ({registry.backends[n].available().reason})" for n in fast)
    oracle = fallbacks[-1] if fallbacks else "reference"
    print(f"rocmforge: note: {reasons or 'the cpu backend is not installed'}; using the slow numpy {oracle} "
          "backend (pip install 'rocmforge[cpu]', or make install)", file=sys.stderr)
    return oracle


def configure_threads(threads: int | None) -> None:
    """Apply --threads to every backend (numba's thread count is per calling thread: call this from the thread
    that will run the model)."""
    if threads is not None and threads < 1:
        raise RocmforgeError(f"--threads must be at least 1, got {threads}")
    for backend in get_registry().backends.values():
        backend.configure(threads=threads)
