"""The paged KV cache: per layer, NB blocks of BS token slots ([NB, BS, Hkv, D], as the attention op expects),
and a block table per sequence slot listing its blocks in position order.

Block 0 is never handed out: unused table entries point at it, so a stray read lands in a block no sequence owns.
The table's last row (``pad_slot``) belongs to no sequence and stays all block 0: the rows a decode batch is
padded with (to a captured batch size) write there. The block table lives in one tensor allocated once and
rewritten (``sync``) when allocations change, so a captured decode step keeps reading the same memory.

Prefix caching (vLLM's hashed blocks): a block whose BS positions are all written is named by a hash of its
parent block's hash and its token ids (``commit``), so the name covers the whole prefix up to its end. A new
sequence takes the longest chain of named blocks matching its tokens (``match_prefix``) into its table and
computes only the rest. Blocks are refcounted; one whose last sequence left stays named and cached,
least recently freed first out, until the allocator needs it. Only full blocks are shared and a sequence writes
only positions past its matched prefix, so a shared block is never written.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Callable, Sequence

import numpy as np

from rocmforge_core.errors import RocmforgeError


class CacheFullError(RocmforgeError):
    """The KV cache has no free block for a sequence that needs one."""


def block_hash(parent: bytes, tokens: Sequence[int]) -> bytes:
    """The name of a full block: its parent's name and its token ids (a cryptographic hash, so no request can
    make its blocks collide with another's prefix)."""
    return hashlib.blake2b(parent + np.asarray(tokens, dtype=np.int64).tobytes(), digest_size=16).digest()


class BlockAllocator:
    """Free blocks, refcounts, and the named (prefix-cached) blocks: a named block nobody references is
    *cached*, handed out again only when no unnamed free block is left (the least recently freed first)."""

    def __init__(self, n_blocks: int):
        if n_blocks < 2:
            raise ValueError("a KV cache needs at least 2 blocks (block 0 is reserved)")
        self.n_blocks = n_blocks
        self._free = list(range(n_blocks - 1, 0, -1))  # pop() hands out low ids first
        self._refs = [0] * n_blocks
        self._named: dict[bytes, int] = {}  # hash -> block
        self._name = [b""] * n_blocks  # block -> its hash, b"" when unnamed
        self._cached: OrderedDict[int, None] = OrderedDict()  # named blocks with no reference, oldest first

    @property
    def n_free(self) -> int:
        """Blocks that can be handed out: free ones and cached ones."""
        return len(self._free) + len(self._cached)

    @property
    def n_cached(self) -> int:
        return len(self._cached)

    def allocate(self, n: int) -> list[int]:
        if n > self.n_free:
            raise CacheFullError(f"the KV cache is full: {n} more blocks needed, {self.n_free} free; "
                                 "use a larger --ctx-size or fewer parallel sequences")
        out = []
        for _ in range(n):
            if self._free:
                block = self._free.pop()
            else:  # evict the least recently freed cached block
                block, _ = self._cached.popitem(last=False)
                del self._named[self._name[block]]
                self._name[block] = b""
            self._refs[block] = 1
            out.append(block)
        return out

    def free(self, blocks: list[int]) -> None:
        """Drop a reference to each block; given in position order, the last block of a chain is evicted first."""
        for block in reversed(blocks):
            self._refs[block] -= 1
            if self._refs[block] == 0:
                if self._name[block]:
                    self._cached[block] = None
                else:
                    self._free.append(block)

    def lookup(self, name: bytes) -> int | None:
        """The block named ``name``, referenced once more; None when none is."""
        block = self._named.get(name)
        if block is not None:
            if self._refs[block] == 0:
                del self._cached[block]
            self._refs[block] += 1
        return block

    def name(self, block: int, name: bytes) -> None:
        """Name a full block (its tokens' KV is written). When another block already has the name (two sequences
        computed the same prefix at once), the first keeps it and this one stays private."""
        if name not in self._named and not self._name[block]:
            self._named[name] = block
            self._name[block] = name


class KVCache:
    """layers: one (backend, n_kv_heads, head_dim, head_dim_v) per layer, the backend running its attention."""

    def __init__(self, layers, *, max_seqs: int, max_tokens: int, block_size: int = 16, n_blocks: int | None = None,
                 table_backend, dtype: str = "f32", prefix_cache: bool = True):
        self.block_size = block_size
        self.prefix_cache = prefix_cache
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
        self._names: dict[int, list[bytes]] = {}  # slot -> the hashes of its leading full blocks, named so far
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
                self._names[slot] = []
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

    def match_prefix(self, slot: int, tokens: Sequence[int]) -> int:
        """Give the new sequence in ``slot`` the longest chain of cached blocks holding a prefix of ``tokens``,
        leaving at least the last token to compute (its logits are needed); returns the tokens matched."""
        blocks, names = self._blocks[slot], self._names[slot]
        if blocks:
            raise ValueError(f"slot {slot} already holds blocks: a prefix is matched before anything is written")
        if not self.prefix_cache:
            return 0
        bs, parent = self.block_size, b""
        for start in range(0, len(tokens) - bs, bs):  # full blocks before the last token only
            name = block_hash(parent, tokens[start:start + bs])
            block = self.allocator.lookup(name)
            if block is None:
                break
            blocks.append(block)
            names.append(name)
            parent = name
        n = len(blocks) * bs
        if blocks:
            self._table_host[slot, :len(blocks)] = blocks
            self._dirty = True
        return n

    def commit(self, slot: int, n_written: int, tokens: Callable[[int, int], Sequence[int]]) -> None:
        """Positions 0 .. n_written-1 of the sequence in ``slot`` hold their KV: name its full blocks not named
        yet, so later sequences can share them. ``tokens(start, end)``: the sequence's token ids there (asked
        only when a block has filled)."""
        names = self._names[slot]
        if not self.prefix_cache or n_written < (len(names) + 1) * self.block_size:
            return
        bs, blocks = self.block_size, self._blocks[slot]
        for i in range(len(names), n_written // bs):
            name = block_hash(names[-1] if names else b"", tokens(i * bs, (i + 1) * bs))
            self.allocator.name(blocks[i], name)
            names.append(name)

    def free_sequence(self, slot: int) -> None:
        blocks = self._blocks.pop(slot)
        del self._names[slot]
        self.allocator.free(blocks)
        self._table_host[slot] = 0
        self._dirty = True

    def sync(self) -> None:
        """Write changed block tables to the backend's tensor (before a step)."""
        if self._dirty:
            self._table_backend.write(self.tables, self._table_host)
            self._dirty = False

    def blocks_in_use(self) -> int:
        """Blocks some sequence references (cached blocks nobody references are not in use)."""
        return self.allocator.n_blocks - 1 - self.allocator.n_free

    def blocks_of(self, slot: int) -> int:
        return len(self._blocks[slot])

    def nbytes(self) -> int:
        return sum(int(np.prod(t.shape)) for t in self.k + self.v) * self.itemsize
