"""A GGUF string array kept in the mapped file: found by one pass over the length fields, decoded on access.

A vocabulary holds up to a few hundred thousand strings; building that many Python objects at open time is what
makes gguf's GGUFReader slow. Here opening only records where each string starts; ``tolist()`` decodes them all
in bulk when a tokenizer needs them.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Iterator, overload

import numpy as np

_U64 = struct.Struct("<Q").unpack_from


class TruncatedStrings(Exception):
    """Raised by scan_strings; the reader turns it into a GGUFError naming the metadata key."""

    def __init__(self, index: int, offset: int, needed: int) -> None:
        super().__init__(index, offset, needed)
        self.index, self.offset, self.needed = index, offset, needed


def scan_strings(buf, offset: int, count: int, end: int) -> tuple[np.ndarray, int]:
    """Start offsets (of each string's 8-byte length field) of ``count`` GGUF strings at ``offset``, and the
    offset just past the last one. ``end`` bounds the scan; the caller has checked count * 8 <= end - offset, so
    the list below cannot be a huge allocation."""
    starts = [0] * count
    o = offset
    try:
        for i in range(count):
            starts[i] = o
            o += 8 + _U64(buf, o)[0]
            if o > end:
                raise TruncatedStrings(i, starts[i], o - starts[i])
    except struct.error:  # a length field itself runs past the end of the buffer
        raise TruncatedStrings(i, o, 8) from None
    return np.array(starts, dtype=np.int64), o


class StringArray(Sequence):
    """Read-only sequence of str over a region of the mapped file (UTF-8; invalid bytes decode as U+FFFD,
    ``bytes_at``/``tobytes_list`` give the exact bytes)."""

    __slots__ = ("_buf", "_starts", "_ends")

    def __init__(self, buf: np.ndarray, starts: np.ndarray, end: int) -> None:
        # buf: uint8 array of the whole region; starts: offsets of the length fields inside it
        self._buf = buf
        self._starts = starts + 8
        self._ends = np.empty_like(starts)
        self._ends[:-1] = starts[1:]
        self._ends[-1:] = end

    def __len__(self) -> int:
        return len(self._starts)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.bytes_at(i).decode("utf-8", "replace")

    def bytes_at(self, i: int) -> bytes:
        i = range(len(self))[i]  # bounds check and negative indices
        return self._buf[self._starts[i]:self._ends[i]].tobytes()

    def __iter__(self) -> Iterator[str]:
        return iter(self.tolist())

    def tobytes_list(self) -> list[bytes]:
        blob = self._buf.tobytes()
        return [blob[a:b] for a, b in zip(self._starts.tolist(), self._ends.tolist())]

    def tolist(self) -> list[str]:
        """Every string, decoded in bulk (one copy of the region, one decode per string)."""
        blob = self._buf.tobytes()
        return [blob[a:b].decode("utf-8", "replace") for a, b in zip(self._starts.tolist(), self._ends.tolist())]

    def __eq__(self, other) -> bool:
        if isinstance(other, StringArray):
            return self.tobytes_list() == other.tobytes_list()
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return self.tolist() == list(other)
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        head = ", ".join(repr(s) for s in self[:3])
        return f"StringArray([{head}{', ...' if len(self) > 3 else ''}], len={len(self)})"
