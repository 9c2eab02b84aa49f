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


# -- prefix caching -----------------------------------------------------------------------------------------------
def written(cache, slot, tokens):
    """Reserve and 'write' ``tokens`` into ``slot`` (the tests need no attention op), naming its full blocks."""
    cache.reserve(slot, len(tokens))
    cache.commit(slot, len(tokens), lambda a, b: tokens[a:b])


def test_full_blocks_are_shared_by_content_and_the_last_token_is_always_computed():
    cache = make_cache(max_seqs=3, max_tokens=20)
    a = cache.add_sequence()
    prompt = list(range(1, 11))  # blocks of 4: two full, one partial
    written(cache, a, prompt)
    b = cache.add_sequence()
    assert cache.match_prefix(b, prompt + [99, 98]) == 8  # both full blocks
    cache.sync()
    assert list(cache.tables[b, :2]) == list(cache.tables[a, :2])
    assert cache.blocks_in_use() == 3  # shared, not copied
    c = cache.add_sequence()
    assert cache.match_prefix(c, prompt[:8]) == 4  # an exact 8-token prompt still computes its last block
    cache.free_sequence(c)
    cache.free_sequence(b)
    # a different first block changes every later name: nothing matches
    d = cache.add_sequence()
    assert cache.match_prefix(d, [7] + prompt[1:]) == 0


def test_freed_named_blocks_stay_cached_until_needed_least_recently_freed_first():
    cache = make_cache(max_seqs=2, max_tokens=20, n_blocks=6)  # 5 usable blocks
    a = cache.add_sequence()
    first = list(range(1, 9))
    written(cache, a, first + [50])  # 3 blocks: two named
    cache.free_sequence(a)
    assert cache.blocks_in_use() == 0 and cache.allocator.n_cached == 2 and cache.allocator.n_free == 5
    b = cache.add_sequence()
    cache.reserve(b, 12)  # 3 blocks from the 3 never-named ones: the cache survives
    assert cache.allocator.n_cached == 2
    c = cache.add_sequence()
    assert cache.match_prefix(c, first + [60]) == 8  # taken back from the cache
    cache.free_sequence(c)
    cache.reserve(b, 16)  # one more block: the chain's last block goes first, its first survives
    assert cache.allocator.n_cached == 1
    c = cache.add_sequence()
    assert cache.match_prefix(c, first + [60]) == 4
    with pytest.raises(CacheFullError, match="KV cache is full"):
        cache.reserve(c, 16)  # 4 of 5 held by b, 1 shared: the cache cannot give 3 more


def test_blocks_named_twice_stay_private_and_refcounts_free_them_once():
    cache = make_cache(max_seqs=2, max_tokens=20)
    tokens = list(range(1, 9))
    a, b = cache.add_sequence(), cache.add_sequence()
    written(cache, a, tokens)
    written(cache, b, tokens)  # computed at the same time: b's blocks are not the named ones
    cache.free_sequence(a)
    cache.free_sequence(b)
    assert cache.allocator.n_cached == 2 and cache.allocator.n_free == cache.allocator.n_blocks - 1
    c = cache.add_sequence()
    assert cache.match_prefix(c, tokens + [1]) == 8


def test_no_prefix_cache_names_nothing():
    cache = make_cache(prefix_cache=False)
    a = cache.add_sequence()
    written(cache, a, list(range(1, 10)))
    cache.free_sequence(a)
    b = cache.add_sequence()
    assert cache.match_prefix(b, list(range(1, 10))) == 0 and cache.allocator.n_cached == 0
