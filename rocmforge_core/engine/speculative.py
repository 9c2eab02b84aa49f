"""Speculative decoding: a drafter guesses a sequence's next tokens, one decode step checks them all.

A verification step feeds the sequence's newest token and its n draft tokens as 1 + n rows of a *decode* step of
the one sequence at positions p .. p + n: every row writes its K/V at its position before attention and attends
to the positions up to its own, so row j computes the logits plain decoding computes at p + j once draft[:j] is
accepted. Row j is sampled as plain decoding samples that position (``Sequence.draft_rows``: the draw's counter
and the penalty history j tokens further on), and its token is handed to ``Sequence.accept``; the run stops at the
first row whose token differs from the draft (that token is the model's own and is kept) or when the sequence
ends (end of generation, stop string, max_tokens, context). So the tokens are the ones plain decoding gives,
greedy or seeded sampling alike, wherever a row's logits do not depend on the other rows of its step: the hip
backend's decode steps of up to 64 rows (docs/HIP.md, "Batch invariance"). The cpu backend's products round
differently for 1 row and for several (about 1e-5 of the logits), so there the tokens differ only where two
candidates are that close. K/V written by rejected rows sits beyond the accepted length, where nothing reads it
before the next step overwrites it.

Drafters: ``PromptLookup`` (n-gram lookup in the sequence's own prompt and output, no model) and
``draft_model.DraftModel`` (a second, small Engine decoding greedily with its own KV cache). ``propose`` takes
every sequence of a step at once, so a draft model runs one batch per draft position for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np

from rocmforge_core.errors import RocmforgeError

DRAFT_MAX = 8  # draft tokens per verification step unless asked (a step of 9 rows)
LOOKUP_NGRAM = 3  # longest n-gram prompt lookup matches unless asked


class Drafter(Protocol):
    def propose(self, requests: Sequence[tuple[int, list[int], int]]) -> list[list[int]]:
        """For each (key, context tokens, k): up to k tokens that may follow the context. ``key`` names the
        sequence across calls (a drafter may keep state for it until ``release``)."""

    def release(self, key: int) -> None:
        """The sequence ``key`` ended: drop what is kept for it."""

    def close(self) -> None:
        """Free what the drafter holds (a draft model's weights)."""


@dataclass
class Speculation:
    """How a generation speculates: its drafter and the draft tokens per verification step at most."""
    drafter: Drafter
    draft_max: int = DRAFT_MAX

    def __post_init__(self):
        if self.draft_max < 1:
            raise RocmforgeError(f"--draft-max must be at least 1 token, got {self.draft_max}")


@dataclass
class Verification:
    """One sequence's rows in a verification step."""
    tokens: list[int]
    positions: list[int]
    sampling: list


def verification(seq, draft: Sequence[int]) -> Verification:
    """The rows that check ``draft`` after the sequence's newest token (see the module doc)."""
    p = seq.position
    return Verification([seq.ids[-1], *draft], list(range(p, p + len(draft) + 1)), seq.draft_rows(draft))


def accept_verified(draft: Sequence[int], sampled: Sequence[int], accept: Callable[[int], bool]) -> int:
    """Hand the rows' tokens to ``accept`` (a sequence's: True when it ended) up to the first that differs from
    the draft, that one included, or until the sequence ends; returns the draft tokens accepted."""
    for j, token in enumerate(sampled[:len(draft) + 1]):
        hit = j < len(draft) and token == draft[j]
        if accept(token) or not hit:
            return j + hit
    return len(draft)


class PromptLookup:
    """Prompt lookup decoding: the tokens that followed an earlier occurrence of the context's last n tokens
    (n from ``ngram_max`` down to ``ngram_min``, the longest that occurs), taking the latest occurrence that has
    k tokens after it, else the one with the most."""

    def __init__(self, ngram_max: int = LOOKUP_NGRAM, ngram_min: int = 1):
        if not 1 <= ngram_min <= ngram_max:
            raise RocmforgeError(f"the lookup n-gram sizes must satisfy 1 <= min <= max, got min {ngram_min}, "
                                 f"max {ngram_max}")
        self.ngram_max, self.ngram_min = ngram_max, ngram_min

    def propose(self, requests):
        return [self.lookup(context, k) for _, context, k in requests]

    def release(self, key: int) -> None:
        pass

    def close(self) -> None:
        pass

    def lookup(self, context: Sequence[int], k: int) -> list[int]:
        tokens = np.asarray(context, dtype=np.int64)
        n_tokens = len(tokens)
        if k < 1:
            return []
        for n in range(min(self.ngram_max, n_tokens - 1), self.ngram_min - 1, -1):
            # starts of earlier windows equal to the last n tokens (the last window itself excluded)
            windows = np.lib.stride_tricks.sliding_window_view(tokens[:-1], n)
            starts = np.flatnonzero((windows == tokens[-n:]).all(axis=1))
            if starts.size:
                follow = n_tokens - (starts + n)  # tokens after each occurrence
                full = starts[follow >= k]
                start = full[-1] if full.size else starts[np.argmax(follow)]
                return [int(t) for t in tokens[start + n:start + n + k]]
        return []
