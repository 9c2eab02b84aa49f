"""numba settings shared by every cpu kernel.

Compiled code is cached on disk (so a second start compiles nothing) under ~/.cache/rocmforge/numba, not next to
the sources, unless NUMBA_CACHE_DIR says otherwise. ``FAST`` allows reassociation (vectorised float reductions)
and fused multiply-add; kernels whose results must be bit-exact (dequantization) use ``exact`` instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import numba

if not numba.config.CACHE_DIR:
    numba.config.CACHE_DIR = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                                 / "rocmforge" / "numba")

FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}  # no nnan/ninf: softmax masks and exp overflow need inf


def fast(fn=None, *, parallel: bool = False, inline: str = "never"):
    """Compile with fast-math flags (for kernels held to a tolerance)."""
    deco = numba.njit(cache=True, nogil=True, fastmath=FAST, parallel=parallel, error_model="numpy", inline=inline)
    return deco(fn) if fn is not None else deco


def exact(fn=None, *, parallel: bool = False):
    """Compile with IEEE semantics: no reassociation, no contraction (bit-exact dequantization)."""
    deco = numba.njit(cache=True, nogil=True, fastmath=False, parallel=parallel, error_model="numpy")
    return deco(fn) if fn is not None else deco
