"""Device memory: tensors, a weight arena, and a reusable pool for activations and KV caches.

Weights go into a few large arena chunks, never hundreds of small allocations (hundreds of small ones hung an
RDNA3 driver in an earlier project). Activations come from a caching pool: a tensor's block returns to a free list
of its size class when the tensor is dropped, and the next allocation of that class reuses it, so a decode step
allocates nothing from the driver after the first one. While a step is captured as a graph the pool hands out
blocks of a private arena kept by that graph, so the pointers the graph holds stay valid and unshared for as long
as it can be replayed.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from rocmforge_core.errors import OutOfMemoryError

ITEMSIZE = {"f32": 4, "f16": 2, "f64": 8, "i32": 4, "i64": 8, "u8": 1}
NUMPY = {"f32": np.float32, "f16": np.float16, "f64": np.float64, "i32": np.int32, "i64": np.int64, "u8": np.uint8}
NAMES = {np.dtype(v): k for k, v in NUMPY.items()}
ALIGN = 256
ARENA_CHUNK = 256 << 20


class DeviceTensor:
    """A contiguous array in device memory: ``ptr`` (int), ``shape``, ``dtype_name``. ``reshape`` returns a view
    sharing the memory; the memory returns to its pool when the last view is dropped."""
    __slots__ = ("ptr", "shape", "dtype_name", "_block", "__weakref__")

    def __init__(self, ptr: int, shape: tuple[int, ...], dtype_name: str, block=None) -> None:
        self.ptr = ptr
        self.shape = tuple(int(s) for s in shape)
        self.dtype_name = dtype_name
        self._block = block

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(NUMPY[self.dtype_name])

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * ITEMSIZE[self.dtype_name]

    def reshape(self, *shape) -> "DeviceTensor":
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        shape = list(shape)
        if -1 in shape:
            known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
            shape[shape.index(-1)] = self.size // max(known, 1)
        if int(np.prod(shape, dtype=np.int64)) != self.size:
            raise ValueError(f"cannot reshape {self.shape} to {tuple(shape)}")
        return DeviceTensor(self.ptr, tuple(shape), self.dtype_name, self._block)

    def __repr__(self) -> str:
        return f"DeviceTensor({self.dtype_name}{list(self.shape)} @ {self.ptr:#x})"


class _Block:
    """One pool allocation; returns itself to its free list when collected."""
    __slots__ = ("pool", "ptr", "size", "__weakref__")

    def __init__(self, pool: "Pool", ptr: int, size: int) -> None:
        self.pool, self.ptr, self.size = pool, ptr, size

    def __del__(self) -> None:
        pool = self.pool
        if pool is not None and not pool.closed:
            pool.free_lists[self.size].append(self.ptr)


def _size_class(nbytes: int) -> int:
    """Round up so that blocks are reused across slightly different sizes: 256 B granules up to 1 MiB, then
    powers of two split in four."""
    n = max(int(nbytes), 1)
    if n <= 1 << 20:
        return (n + ALIGN - 1) // ALIGN * ALIGN
    step = 1 << (n.bit_length() - 3)
    return (n + step - 1) // step * step


def _oom(runtime, what: str, nbytes: int) -> OutOfMemoryError:
    free, total = runtime.mem_info()
    return OutOfMemoryError(
        f"the GPU ({runtime.info.name}) has no room for {what} of {nbytes / 2**20:.1f} MiB "
        f"({free / 2**20:.0f} MiB free of {total / 2**20:.0f} MiB); keep fewer layers on the GPU with a profile "
        f"that places some on the cpu backend, use a smaller quantization, or shorten the context")


class Pool:
    """Caching allocator for activations and KV caches (stream-ordered reuse: one stream)."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime
        self.free_lists: dict[int, list[int]] = defaultdict(list)
        self.owned: list[int] = []
        self.closed = False

    def alloc(self, nbytes: int, what: str = "an activation") -> _Block:
        size = _size_class(nbytes)
        free = self.free_lists[size]
        if free:
            return _Block(self, free.pop(), size)
        try:
            ptr = self.runtime.alloc(size)
        except MemoryError:
            self.trim()
            try:
                ptr = self.runtime.alloc(size)
            except MemoryError:
                raise _oom(self.runtime, what, size) from None
        self.owned.append(ptr)
        return _Block(self, ptr, size)

    def trim(self) -> None:
        """Give cached free blocks back to the driver."""
        self.runtime.synchronize()
        for size, ptrs in self.free_lists.items():
            for ptr in ptrs:
                self.runtime.free(ptr)
                self.owned.remove(ptr)
            ptrs.clear()

    def __del__(self) -> None:
        # Reached only when no block (so no tensor) of this pool is left: a captured graph's private pool.
        if not self.closed:
            self.closed = True
            for ptr in self.owned:
                self.runtime.free(ptr)


class Arena:
    """Bump allocator over large chunks, for weights that live as long as the model."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime
        self.chunks: list[tuple[int, int]] = []  # (ptr, size)
        self.offset = 0
        self.used = 0

    def alloc(self, nbytes: int, what: str = "a weight") -> int:
        nbytes = (max(int(nbytes), 1) + ALIGN - 1) // ALIGN * ALIGN
        if not self.chunks or self.offset + nbytes > self.chunks[-1][1]:
            size = max(ARENA_CHUNK, nbytes)
            try:
                ptr = self.runtime.alloc(size)
            except MemoryError:
                raise _oom(self.runtime, what, nbytes) from None
            self.chunks.append((ptr, size))
            self.offset = 0
        ptr = self.chunks[-1][0] + self.offset
        self.offset += nbytes
        self.used += nbytes
        return ptr
