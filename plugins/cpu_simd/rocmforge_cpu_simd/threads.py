"""Thread count of the cpu kernels: ``--threads`` or, by default, the number of physical cores we may run on.

Hyper-threads share a core's SIMD units and its load ports, so for these bandwidth- and FMA-bound kernels one
thread per physical core is the best default (llama.cpp makes the same choice).

Two thread pools serve the kernels: numba's (OpenMP) for the SIMD loops, and ``map_tiles``'s for prefill sgemm,
where each worker multiplies its own tiles through single-threaded BLAS (gemm.py turns BLAS's own threads off
for the duration): OpenMP and OpenBLAS workers both spin after their work, and with both pools at two threads
on two cores they took turns stalling each other (measured: prefill matmuls 2.3x slower).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba

from rocmforge_core.errors import BackendError

_pool: ThreadPoolExecutor | None = None
_count = 1

# Below this much work (multiply-adds, about 150 us on one core) a kernel runs on the calling thread alone. With
# sleeping OpenMP workers (jit.py's default) every parallel kernel pays a wake-up: 70-140 us for an empty kernel
# on the busy 2-core VM, more than a decode step's layer matmuls take on one core (9-70 us). Spinning workers
# (OMP_WAIT_POLICY=ACTIVE, for dedicated machines) wake in a few microseconds, so then small kernels split too.
PARALLEL_MIN_WORK = 128 * 1024 if os.environ.get("OMP_WAIT_POLICY", "").upper() == "ACTIVE" else 2 * 1024 * 1024


def usable_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def physical_cores() -> int:
    """Distinct physical cores among the CPUs this process may use (sysfs topology; logical CPUs if absent)."""
    cpus = usable_cpus()
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip()))
        except OSError:
            return len(cpus)
    return max(1, len(cores))


def set_threads(threads: int | None) -> int:
    """Use ``threads`` worker threads (None: physical cores) in numba's kernels and for prefill's sgemm tiles;
    returns the number in effect."""
    limit = numba.config.NUMBA_NUM_THREADS
    n = min(physical_cores(), limit) if threads is None else int(threads)
    if n < 1:
        raise BackendError(f"--threads must be at least 1, got {n}")
    if n > limit:
        raise BackendError(f"--threads {n} exceeds the {limit} threads numba was started with; "
                           f"set NUMBA_NUM_THREADS={n} before starting rocmforge")
    global _pool, _count
    numba.set_num_threads(n)
    _count = n
    if _pool is None or _pool._max_workers != n:
        if _pool is not None:
            _pool.shutdown(wait=True)
        _pool = ThreadPoolExecutor(n, thread_name_prefix="rocmforge-cpu")
    return n


def worth_parallel(work: int) -> bool:
    return _count > 1 and work >= PARALLEL_MIN_WORK


def threads() -> int:
    """The thread count in effect (numba.get_num_threads() costs ~10 us a call: it takes a lock)."""
    return _count


def map_tiles(fn, starts) -> None:
    """Run ``fn(start)`` for every start, spread over the worker threads (fn must release the GIL for its bulk:
    numba nogil kernels and BLAS do)."""
    starts = list(starts)
    if len(starts) == 1 or _pool is None:
        for start in starts:
            fn(start)
        return
    for future in [_pool.submit(fn, start) for start in starts]:
        future.result()
