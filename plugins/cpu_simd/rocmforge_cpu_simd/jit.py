"""numba settings shared by every cpu kernel.

Compiled code is cached on disk (so a second start compiles nothing) under ~/.cache/rocmforge/numba, not next to
the sources, unless NUMBA_CACHE_DIR says otherwise. ``FAST`` allows reassociation (vectorised float reductions)
and fused multiply-add; kernels whose results must be bit-exact (dequantization) use ``exact`` instead.
"""

from __future__ import annotations

import os
import types as pytypes
from pathlib import Path

import numba
import numpy as np
from llvmlite import binding as llvm, ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from rocmforge_cpu_simd import compiling

# numba's OpenMP workers spin for a bounded time after each kernel (GOMP_SPINCOUNT for libgomp, numba's default
# here, KMP_BLOCKTIME in ms for Intel/LLVM OpenMP), then sleep. A decode step runs a kernel every 10-50 us, so
# workers that spin 0.3-0.5 ms (measured: 20000 spins) stay awake through a step and cost no wake-up (70-140 us on
# the busy VM) per kernel, while an idle process keeps no core busy. Spinning forever (OMP_WAIT_POLICY=ACTIVE)
# collapsed under load: a spinning worker preempted by another process makes the next barrier wait for its time
# slice; threads.py measures which kernels pay to run parallel. Must be set before OpenMP starts (the backend's
# first set_num_threads); a user's own setting of any of these wins (OMP_WAIT_POLICY=PASSIVE: sleeping workers).
_WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
if not any(v in os.environ for v in _WAIT_VARS):
    os.environ.update(OMP_WAIT_POLICY="PASSIVE", GOMP_SPINCOUNT="20000", KMP_BLOCKTIME="1")


def workers_spin() -> bool:
    """Whether OpenMP workers spin after a kernel (then waking them for a small kernel costs next to nothing)."""
    spin = os.environ.get("GOMP_SPINCOUNT", "").strip()
    if spin:
        return spin != "0"
    return os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE"  # libgomp's unset policy spins ~3 ms


if not numba.config.CACHE_DIR:
    numba.config.CACHE_DIR = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                                 / "rocmforge" / "numba")


def _allow_512_bit_vectors() -> None:
    """LLVM tunes AVX-512 CPUs to prefer 256-bit vectors (older Xeons down-clock on 512-bit code). These kernels
    are convert/FMA bound and measured 1.3-1.4x faster at full width on this machine, so unless the user set
    NUMBA_CPU_FEATURES, AVX-512 hosts get 512-bit vectors. Takes effect if numba has compiled nothing yet."""
    if numba.config.CPU_FEATURES:
        return
    features = llvm.get_host_cpu_features()
    if features.get("avx512f") and features.get("avx512bw"):
        numba.config.CPU_FEATURES = features.flatten() + ",-prefer-256-bit"


_allow_512_bit_vectors()

FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}  # no nnan/ninf: softmax masks and exp overflow need inf


def fast(fn=None, *, parallel: bool = False, inline: str = "never"):
    """Compile with fast-math flags (for kernels held to a tolerance)."""
    deco = numba.njit(cache=True, nogil=True, fastmath=FAST, parallel=parallel, error_model="numpy", inline=inline)
    return deco(fn) if fn is not None else deco


def exact(fn=None, *, parallel: bool = False):
    """Compile with IEEE semantics: no reassociation, no contraction (bit-exact dequantization)."""
    deco = numba.njit(cache=True, nogil=True, fastmath=False, parallel=parallel, error_model="numpy")
    return deco(fn) if fn is not None else deco


def serial_and_parallel(fn, jit) -> dict:
    """{False: serial, True: parallel} compilations of ``fn`` with decorator ``jit`` (``fast`` or ``exact``).

    numba's cache key covers the function's code and closure cells but not its compile options, so two
    compilations of one function load each other's cached machine code (a "serial" kernel that opened parallel
    regions, a "parallel" one that ran on one thread). The parallel one is compiled from a copy with its own
    qualified name, hence its own cache file. The pair is registered for compiling.compile_twins."""
    twin = pytypes.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    twin.__qualname__ = fn.__qualname__ + "_parallel"
    twin.__module__ = fn.__module__
    return compiling.register_pair({False: jit(fn), True: jit(twin, parallel=True)})


@intrinsic
def prefetch(typingctx, array, index):
    """prefetch(array, i): ask for the cache line holding byte ``i`` of ``array``'s data (LLVM's llvm.prefetch,
    read, keep in all levels). The row loops stream weights row by row; without it, a core waits on every row's
    first cache lines (measured: 3.5 GB/s streaming Q4 rows, 9.5 GB/s with rows prefetched 8 ahead)."""
    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        i8p = ir.IntType(8).as_pointer()
        ptr = builder.gep(builder.bitcast(data, i8p), [args[1]])
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0i8")
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return types.void(array, types.intp), codegen


PREFETCH_ROWS = 8


@fast(inline="always")
def prefetch_row(array, row):
    """Prefetch every cache line of row ``row`` of a C-contiguous 2-D array."""
    if row < array.shape[0]:
        nbytes = array.shape[1] * array.itemsize
        start = row * nbytes
        for offset in range(0, nbytes, 64):
            prefetch(array, start + offset)


@intrinsic
def _f32_from_bits(typingctx, bits):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


_LOG2E = np.float32(1.4426950408889634)
_LN2_HI, _LN2_LO = np.float32(0.693359375), np.float32(-2.12194440e-4)
_EXP_MIN, _EXP_MAX = np.float32(-87.33654), np.float32(88.37626)


@fast(inline="always")
def exp32(x):
    """exp(x) in float32 that LLVM vectorises (numba without Intel's SVML calls libm's scalar expf: 5 ns a value,
    against 0.4 ns here): Cephes' expf, x = n ln2 + r with |r| <= ln2/2, a degree-6 polynomial for e^r and 2^n
    made from its exponent bits. Relative error < 3e-7 from -87.3 to 88.3; 0 below (-inf included), exp(88.38)
    above (a gate or a softmax never gets there); NaN stays NaN."""
    c = min(max(x, _EXP_MIN), _EXP_MAX)
    n = np.floor(c * _LOG2E + np.float32(0.5))
    r = c - n * _LN2_HI - n * _LN2_LO
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    y = (p * r * r + r + np.float32(1.0)) * _f32_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))
    return y if x >= _EXP_MIN else (np.float32(0.0) if x < _EXP_MIN else x)
