"""Thread count of the cpu kernels: ``--threads`` or, by default, the number of physical cores we may run on.

Hyper-threads share a core's SIMD units and its load ports, so for these bandwidth- and FMA-bound kernels one
thread per physical core is the best default (llama.cpp makes the same choice). BLAS (numpy's OpenBLAS, used for
prefill) gets the same count through threadpoolctl, so its threads never outnumber the cores either.
"""

from __future__ import annotations

import os
from pathlib import Path

import numba
from threadpoolctl import threadpool_limits

from rocmforge_core.errors import BackendError


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
    """Use ``threads`` worker threads (None: physical cores) in numba's kernels and in BLAS (prefill's sgemm);
    returns the number in effect."""
    limit = numba.config.NUMBA_NUM_THREADS
    n = min(physical_cores(), limit) if threads is None else int(threads)
    if n < 1:
        raise BackendError(f"--threads must be at least 1, got {n}")
    if n > limit:
        raise BackendError(f"--threads {n} exceeds the {limit} threads numba was started with; "
                           f"set NUMBA_NUM_THREADS={n} before starting rocmforge")
    numba.set_num_threads(n)
    threadpool_limits(n, user_api="blas")
    return n
