"""The paged KV cache: per layer, NB blocks of BS token slots ([NB, BS, Hkv, D], as the attention op expects),
and a block table per sequence slot listing its blocks in position order.

Block 0 is never handed out: unused table entries point at it, so a stray read lands in a block no sequence owns.
The table's last row (``pad_slot``) belongs to no sequence and stays all block 0: the rows a decode batch is
padded with (to a captured batch size) write there. The block table lives in one tensor allocated once and
rewritten (``sync``) when allocations change, so a captured decode step keeps reading the same memory.
"""

from __future__ import annotations

import numpy as np

from rocmforge_core.errors import RocmforgeError


class CacheFullError(RocmforgeError):
    """The KV cache has no free block for a sequence that needs one."""


class BlockAllocator:
    def __init__(self, n_blocks: int):
        if n_blocks < 2:
            raise ValueError("a KV cache needs at least 2 blocks (block 0 is reserved)")
        self.n_blocks = n_blocks
        self._free = list(range(n_blocks - 1, 0, -1))  # pop() hands out low ids first

    @property
    def n_free(self) -> int:
        return len(self._free)

    def allocate(self, n: int) -> list[int]:
        if n > len(self._free):
            raise CacheFullError(f"the KV cache is full: {n} more blocks needed, {len(self._free)} free; "
                                 "use a larger --ctx-size or fewer parallel sequences")
        return [self._free.pop() for _ in range(n)]

    def free(self, blocks: list[int]) -> None:
        self._free.extend(reversed(blocks))


class KVCache:
    """layers: one (backend, n_kv_heads, head_dim, head_dim_v) per layer, the backend running its attention."""

    def __init__(self, layers, *, max_seqs: int, max_tokens: int, block_size: int = 16, n_blocks: int | None = None,
                 table_backend, dtype: str = "f32"):
        self.block_size = block_size
        self.itemsize = {"f32": 4, "f16": 2}[dtype]
        self.max_tokens = max_tokens
        self.max_blocks_per_seq = -(-max_tokens // block_size)
        n_blocks = n_blocks or max_seqs * self.max_blocks_per_seq + 1
        self.allocator = BlockAllocator(n_blocks)
        self.k = [be.empty((n_blocks, block_size, hkv, d), dtype) for be, hkv, d, _ in layers]
        self.v = [be.empty((n_blocks, block_size, hkv, dv), dtype) for be, hkv, _, dv in layers]
        self._table_host = np.zeros((max_seqs + 1, self.max_blocks_per_seq), dtype=np.int32)
        self._table_backend = table_backend
        self.tables = table_backend.from_host(self._table_host)
        self._blocks: dict[int, list[int]] = {}  # slot -> blocks
        self._dirty = False
        self.version = 0  # bumped when a layer's tensors move: bound steps hold the old ones

    @property
    def max_seqs(self) -> int:
        return self._table_host.shape[0] - 1

    @property
    def pad_slot(self) -> int:
        return self._table_host.shape[0] - 1

    def tensor(self, ref):
        """The tensor a ``program.Cache`` argument names: layer ``ref.layer``'s keys or values."""
        return (self.k if ref.part == "k" else self.v)[ref.layer]

    def move(self, layer: int, backend, source):
        """Move layer ``layer``'s keys and values to ``backend`` (an op with state fell back onto it)."""
        self.k[layer] = backend.copy_from(self.k[layer], source)
        self.v[layer] = backend.copy_from(self.v[layer], source)
        self.version += 1

    def add_sequence(self) -> int:
        """A free sequence slot (a row of the block table)."""
        for slot in range(self.max_seqs):
            if slot not in self._blocks:
                self._blocks[slot] = []
                return slot
        raise CacheFullError(f"all {self.max_seqs} sequence slots of the KV cache are in use")

    def reserve(self, slot: int, n_tokens: int) -> None:
        """Make room for positions 0 .. n_tokens-1 of the sequence in ``slot``."""
        if n_tokens > self.max_tokens:
            raise CacheFullError(f"a sequence of {n_tokens} tokens exceeds the cache's {self.max_tokens} per sequence")
        blocks = self._blocks[slot]
        need = -(-n_tokens // self.block_size) - len(blocks)
        if need > 0:
            new = self.allocator.allocate(need)
            self._table_host[slot, len(blocks):len(blocks) + need] = new
            blocks += new
            self._dirty = True

    def free_sequence(self, slot: int) -> None:
        blocks = self._blocks.pop(slot)
        self.allocator.free(blocks)
        self._table_host[slot] = 0
        self._dirty = True

    def sync(self) -> None:
        """Write changed block tables to the backend's tensor (before a step)."""
        if self._dirty:
            self._table_backend.write(self.tables, self._table_host)
            self._dirty = False

    def blocks_in_use(self) -> int:
        return self.allocator.n_blocks - 1 - self.allocator.n_free

    def nbytes(self) -> int:
        return sum(int(np.prod(t.shape)) for t in self.k + self.v) * self.itemsize
