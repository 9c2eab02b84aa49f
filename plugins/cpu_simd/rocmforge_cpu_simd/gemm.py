"""Batched products (prefill) through BLAS sgemm: the weight's rows in tiles, each tile dequantized once into a
float32 buffer that stays in L2 and multiplied by the whole batch, so every weight is reused by every token from
registers. Tiles are spread over the backend's threads; each runs single-threaded BLAS (see threads.py): BLAS's
own threads are off while tiles run and back to their setting afterwards, so nothing else in the process sees
a change."""

from __future__ import annotations

import threading

import numpy as np
from threadpoolctl import ThreadpoolController

from rocmforge_cpu_simd import threads

TILE_BYTES = 1 << 21  # float32 bytes of one dequantized tile

_local = threading.local()
_blas: ThreadpoolController | None = None  # the loaded BLAS libraries, found once (a scan of loaded libraries)


def one_blas_thread():
    """BLAS on one thread while the backend's own threads each run a share of the products."""
    global _blas
    if _blas is None:
        _blas = ThreadpoolController()
    return _blas.limit(limits=1, user_api="blas")


def _buffer(rows: int, k: int) -> np.ndarray:
    buf = getattr(_local, "buf", None)
    if buf is None or buf.size < rows * k:
        buf = _local.buf = np.empty(rows * k, dtype=np.float32)
    return buf[:rows * k].reshape(rows, k)


def tile_rows(n: int, k: int, workers: int) -> int:
    """Rows per tile: at most TILE_BYTES of float32, in a number of equal tiles that is a multiple of the workers.
    Tiles of the largest size that fits and a remainder left threads idle: gemma-3-270m's 2048-row products
    made 3 tiles of 819, 819 and 410 rows for 2 threads."""
    most = max(1, TILE_BYTES // (4 * k))
    tiles = workers * -(-n // (workers * most))
    return max(1, -(-n // tiles))


def tiled_sgemm(x: np.ndarray, n: int, rows_of, res: np.ndarray) -> np.ndarray:
    """res[:, r0:r1] = x @ rows_of(r0, r1, buffer).T over tiles of weight rows. ``rows_of`` returns float32
    rows [r1 - r0, k], written into ``buffer`` when it has to dequantize (a thread's own)."""
    k = x.shape[1]
    per_tile = tile_rows(n, k, threads.threads())

    def tile(start: int) -> None:
        stop = min(n, start + per_tile)
        w = rows_of(start, stop, _buffer(stop - start, k))
        np.matmul(x, w.T, out=res[:, start:stop])

    with one_blas_thread():
        threads.map_tiles(tile, range(0, n, per_tile))
    return res
