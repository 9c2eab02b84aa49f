import numpy as np
import pytest

from rocmforge_core.engine.kv_cache import BlockAllocator, CacheFullError, KVCache
from rocmforge_core.reference_backend import ReferenceBackend


def test_allocator_never_hands_out_block_zero_and_reuses_freed_blocks():
    a = BlockAllocator(5)
    got = a.allocate(4)
    assert sorted(got) == [1, 2, 3, 4] and a.n_free == 0
    with pytest.raises(CacheFullError, match="KV cache is full"):
        a.allocate(1)
    a.free(got[:2])
    assert sorted(a.allocate(2)) == sorted(got[:2])


def make_cache(**kw):
    be = ReferenceBackend()
    layers = [(be, 2, 8, 8)] * 3
    return KVCache(layers, table_backend=be, **{"max_seqs": 2, "max_tokens": 20, "block_size": 4, **kw})


def test_layout_matches_the_attention_op():
    cache = make_cache()
    assert len(cache.k) == 3 and cache.k[0].shape == (2 * 5 + 1, 4, 2, 8)
    # a row per sequence slot, and the padding rows' slot, whose entries all name block 0
    assert cache.tables.shape == (3, 5) and cache.tables.dtype == np.int32 and cache.pad_slot == 2
    assert (cache.tables[cache.pad_slot] == 0).all()
    assert cache.nbytes() == 2 * 3 * 11 * 4 * 2 * 8 * 4


def test_reserve_grows_block_tables_and_free_returns_blocks():
    cache = make_cache()
    a, b = cache.add_sequence(), cache.add_sequence()
    cache.reserve(a, 5)
    cache.reserve(b, 1)
    cache.reserve(a, 8)  # still two blocks
    cache.sync()
    assert cache.blocks_in_use() == 3
    assert list(cache.tables[a, :2]) != [0, 0] and cache.tables[a, 2] == 0
    assert len({*cache.tables[a, :2], cache.tables[b, 0]}) == 3
    cache.free_sequence(a)
    cache.sync()
    assert cache.blocks_in_use() == 1 and not cache.tables[a].any()
    assert cache.add_sequence() == a


def test_limits_are_clear_errors():
    cache = make_cache(max_seqs=1)
    slot = cache.add_sequence()
    with pytest.raises(CacheFullError, match="sequence slots"):
        cache.add_sequence()
    with pytest.raises(CacheFullError, match="exceeds"):
        cache.reserve(slot, 21)
