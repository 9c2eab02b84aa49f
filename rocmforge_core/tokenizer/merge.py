"""The two merge loops of llama.cpp's tokenizers, one word at a time.

Both pick, among the current adjacent symbol pairs, the best one and merge it, until no pair qualifies. A heap of
candidate pairs with lazy invalidation gives llama.cpp's exact order (src/llama-vocab.cpp):
- SPM: a pair qualifies when its concatenation is a token; best = highest token score, ties to the leftmost pair.
- BPE: a pair qualifies when it is in tokenizer.ggml.merges; best = lowest merge rank, ties to the leftmost pair.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush


def spm_merge(word: str, token_to_id: dict[str, int], scores: list[float]) -> list[str]:
    """Symbols left after SPM merging of ``word`` (its characters merged by token score)."""
    n = len(word)
    if n < 2:
        return [word] if n else []
    get = token_to_id.get
    heap = []
    for i in range(n - 1):
        tid = get(word[i:i + 2])
        if tid is not None:
            heap.append((-scores[tid], i, i + 1, 2))
    if not heap:
        return list(word)
    syms = list(word)
    lens = [1] * n
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    prev = list(range(-1, n - 1))
    heapify(heap)
    while heap:
        _, left, right, size = heappop(heap)
        la, lb = lens[left], lens[right]
        if not la or not lb or la + lb != size:
            continue
        merged = syms[left] + syms[right]
        syms[left] = merged
        lens[left] = size
        lens[right] = 0
        after = nxt[right]
        nxt[left] = after
        if after >= 0:
            prev[after] = left
            tid = get(merged + syms[after])
            if tid is not None:
                heappush(heap, (-scores[tid], left, after, size + lens[after]))
        before = prev[left]
        if before >= 0:
            tid = get(syms[before] + merged)
            if tid is not None:
                heappush(heap, (-scores[tid], before, left, lens[before] + size))
    out = []
    i = 0
    while i >= 0:
        out.append(syms[i])
        i = nxt[i]
    return out


def bpe_merge(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Symbols left after BPE merging of ``word`` (its characters merged by rank)."""
    syms = list(word)
    n = len(syms)
    if n < 2:
        return syms
    get = ranks.get
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    prev = list(range(-1, n - 1))
    heap = []
    for i in range(n - 1):
        rank = get((syms[i], syms[i + 1]))
        if rank is not None:
            heap.append((rank, i, i + 1, syms[i] + syms[i + 1]))
    heapify(heap)
    while heap:
        _, left, right, text = heappop(heap)
        a, b = syms[left], syms[right]
        if not a or not b or a + b != text:
            continue
        syms[left] = text
        syms[right] = ""
        after = nxt[right]
        nxt[left] = after
        if after >= 0:
            prev[after] = left
        before = prev[left]
        if before >= 0:
            rank = get((syms[before], text))
            if rank is not None:
                heappush(heap, (rank, before, left, syms[before] + text))
        if after >= 0:
            rank = get((text, syms[after]))
            if rank is not None:
                heappush(heap, (rank, left, after, text + syms[after]))
    return [s for s in syms if s]
