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
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba

from rocmforge_core.errors import BackendError
from rocmforge_cpu_simd.jit import workers_spin

_pool: ThreadPoolExecutor | None = None
_count = 1

# Below PARALLEL_MIN_WORK multiply-adds (about 150 us on one core) a kernel runs on the calling thread if the
# OpenMP workers sleep between kernels (OMP_WAIT_POLICY=PASSIVE): a sleeping worker's wake-up costs 70-140 us on
# the busy 2-core VM, more than a decode step's layer matmuls take on one core (9-70 us). Workers that spin
# between kernels (jit.py's default: a bounded spin) join in a few microseconds, so then kernels from
# SPIN_MIN_WORK on can split (SmolLM2 tg128 on two threads: 70 -> 82-86 t/s, docs/PERF.md). But when other jobs
# want the cores, a spinning worker gets preempted (the next barrier waits for its time slice, ms) and takes time
# slices from the calling thread: decode collapsed to 3-12 t/s, and with only the output projection parallel it
# still ran 13% below sleeping workers. So with spinning workers the kernels from SPIN_MIN_WORK on follow one of
# three modes (``_Modes``), picked by measurement: what runs parallel is nothing, kernels from PARALLEL_MIN_WORK
# on, or all of them.
PARALLEL_MIN_WORK = 2 * 1024 * 1024
SPIN_MIN_WORK = 32 * 1024
WINDOW_WORK = 256 * 1024 * 1024   # multiply-adds per measured window: one or two decode steps
TRIAL, MAX_TRIAL = 16, 64         # windows between trials of another mode
IDLE_S = 0.05                     # a longer gap between kernels (no decoding going on) restarts the window


class _Modes:
    """Windows of WINDOW_WORK multiply-adds run in one mode each (0: all serial, 1: kernels from
    PARALLEL_MIN_WORK on parallel, 2: all parallel), timed by the wall clock from the window's first kernel to its
    last, so that a mode pays for everything it causes (stalled barriers, a spinning worker taking the caller's
    time slices). The mode that cost least per multiply-add lately runs; every TRIAL windows (twice as long
    after each lost trial, up to MAX_TRIAL) one window tries the mode measured longest ago; a trial ends early once
    it costs twice the best (under load an all-parallel window can cost ten times a serial one)."""

    def __init__(self) -> None:
        self.cost = [0.0, 0.0, 0.0]   # seconds per multiply-add of the last window in each mode (0: not yet)
        self.measured = [0, 0, 0]     # window number of each mode's last measurement
        self.mode = 2
        self.windows = 0
        self.interval = TRIAL
        self.since_trial = 1          # 0 while a trial window runs
        self.start = self.last = 0.0
        self.work = 0

    def parallel(self, work: int, now: float) -> bool:
        if now - self.last > IDLE_S:
            self.start, self.work = now, 0
        return self.mode == 2 or (self.mode == 1 and work >= PARALLEL_MIN_WORK)

    def done(self, work: int, now: float) -> None:
        self.last = now
        self.work += work
        seconds = now - self.start
        trial = self.since_trial == 0
        if self.work < WINDOW_WORK and not (trial and self.work >= WINDOW_WORK // 8
                                            and seconds > 2 * self.best_cost() * self.work):
            return
        self.windows += 1
        if self.windows == 1:   # the first window loads the kernels' machine code: no measure of its mode
            self.start, self.work = now, 0
            return
        cost, last = seconds / self.work, self.cost[self.mode]
        # the current mode's cost is averaged with its previous window: one disturbed window does not flip the mode
        self.cost[self.mode] = cost if trial or not last else (cost + last) / 2
        self.measured[self.mode] = self.windows
        best = min(range(3), key=self.cost.__getitem__)
        if trial:
            self.interval = TRIAL if best == self.mode else min(2 * self.interval, MAX_TRIAL)
        self.since_trial += 1
        if self.since_trial > self.interval:
            self.since_trial = 0
            best = min((m for m in range(3) if m != best), key=self.measured.__getitem__)
        self.mode = best
        self.start, self.work = now, 0

    def best_cost(self) -> float:
        return min(c for m, c in enumerate(self.cost) if m != self.mode)


_split_small = workers_spin()
_modes = _Modes()


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


BATCH_ROWS = 64  # from this many rows on, row-wise kernels (norms, activations, rope) split over the threads


def split_rows(rows: int) -> bool:
    """Whether a row-wise kernel over ``rows`` rows should use every thread: prefill-sized batches only (the rows
    of a decode step are too few to pay for waking the workers)."""
    return _count > 1 and rows >= BATCH_ROWS


def worth_parallel(work: int) -> bool:
    """Whether a kernel of ``work`` multiply-adds that is not timed by ``run`` should use every thread."""
    return _count > 1 and work >= PARALLEL_MIN_WORK


def run(builds: dict, work: int, *args):
    """Call ``builds[parallel](*args)`` ({False: serial build, True: parallel build}; see jit.serial_and_parallel)
    for a kernel of ``work`` multiply-adds, parallel where that pays (see PARALLEL_MIN_WORK)."""
    if _count == 1 or work < SPIN_MIN_WORK:
        return builds[False](*args)
    if not _split_small:
        return builds[work >= PARALLEL_MIN_WORK](*args)
    result = builds[_modes.parallel(work, time.perf_counter())](*args)
    _modes.done(work, time.perf_counter())
    return result


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
