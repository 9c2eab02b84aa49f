"""GGUF header parser: metadata and tensor infos, read with struct/numpy straight from the mapped file.

Every read is bounds-checked against the file size before it happens, and every count is checked against the
bytes left before anything is allocated for it, so a hostile file gets one GGUFError and never a crash, a hang
or a huge allocation. Layout (v2 and v3 are identical for little-endian files):
magic 'GGUF', u32 version, u64 n_tensors, u64 n_kv, n_kv x (string key, u32 type, value),
n_tensors x (string name, u32 n_dims, n_dims x u64 ne, u32 type, u64 offset), padding to the alignment, data.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from rocmforge_core.errors import GGUFError
from rocmforge_core.gguf.strings import StringArray, TruncatedStrings, scan_strings

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4           # GGML_MAX_DIMS
MAX_ARRAY_NESTING = 8  # arrays of arrays are legal; bound the recursion a hostile file could ask for
INT64_MAX = 2**63 - 1

STRING, ARRAY = 8, 9
# GGUF value type -> numpy dtype, for the fixed-size types
SCALAR_TYPES: dict[int, np.dtype] = {
    0: np.dtype("u1"), 1: np.dtype("i1"), 2: np.dtype("<u2"), 3: np.dtype("<i2"), 4: np.dtype("<u4"),
    5: np.dtype("<i4"), 6: np.dtype("<f4"), 7: np.dtype("?"), 10: np.dtype("<u8"), 11: np.dtype("<i8"),
    12: np.dtype("<f8"),
}
_STRUCTS = {t: struct.Struct("<" + {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "B", 10: "Q",
                                    11: "q", 12: "d"}[t]) for t in SCALAR_TYPES}
VALUE_TYPE_NAMES = {0: "uint8", 1: "int8", 2: "uint16", 3: "int16", 4: "uint32", 5: "int32", 6: "float32",
                    7: "bool", 8: "string", 9: "array", 10: "uint64", 11: "int64", 12: "float64"}
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")


def quote(text: str, limit: int = 80) -> str:
    """A name for an error message: repr'd, and cut short (a hostile file's key may be megabytes long)."""
    return repr(text if len(text) <= limit else text[:limit - 3] + "...")


@dataclass
class RawTensorInfo:
    name: str
    ne: tuple[int, ...]  # ggml order: ne[0] is the row length
    ggml_type: int
    offset: int          # relative to the start of the data section


@dataclass
class Header:
    version: int
    metadata: dict[str, Any]
    value_types: dict[str, int]   # key -> GGUF value type (arrays: ARRAY)
    tensors: list[RawTensorInfo]
    header_end: int               # offset just past the tensor infos


class Parser:
    def __init__(self, data: np.ndarray, name: str) -> None:
        self.data = data                # uint8 array over the whole file
        self.buf = memoryview(data)     # struct reads from it without copies
        self.size = len(data)
        self.name = name
        self.pos = 0

    def fail(self, message: str) -> GGUFError:
        return GGUFError(f"{self.name}: {message}")

    def need(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise self.fail(f"the file is truncated: {what} at byte {self.pos} needs {n} bytes but only "
                            f"{max(self.size - self.pos, 0)} remain")

    def u32(self, what: str) -> int:
        self.need(4, what)
        v = _U32.unpack_from(self.buf, self.pos)[0]
        self.pos += 4
        return v

    def u64(self, what: str) -> int:
        self.need(8, what)
        v = _U64.unpack_from(self.buf, self.pos)[0]
        self.pos += 8
        return v

    def count(self, what: str, min_item_bytes: int) -> int:
        """A u64 count, refused when that many items of at least ``min_item_bytes`` cannot fit in the file."""
        n = self.u64(f"the {what} count")
        if n * min_item_bytes > self.size - self.pos:
            raise self.fail(f"the {what} count {n} at byte {self.pos - 8} exceeds what the remaining "
                            f"{self.size - self.pos} bytes of the file can hold")
        return n

    def string(self, what: str) -> str:
        n = self.u64(f"the length of {what}")
        if n > self.size - self.pos:
            raise self.fail(f"the length {n} of {what} at byte {self.pos - 8} exceeds the file "
                            f"({self.size - self.pos} bytes remain)")
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} at byte {self.pos - n} is not valid UTF-8") from None

    # -- metadata values -------------------------------------------------------------------------------------
    def value(self, vtype: int, key: str, depth: int = 0) -> Any:
        """The value of metadata key ``key`` (already quoted for messages) of GGUF value type ``vtype``."""
        if vtype in SCALAR_TYPES:
            st = _STRUCTS[vtype]
            self.need(st.size, f"the value of {key}")
            v = st.unpack_from(self.buf, self.pos)[0]
            self.pos += st.size
            return bool(v) if vtype == 7 else v
        if vtype == STRING:
            return self.string(f"the value of {key}")
        if vtype == ARRAY:
            return self.array(key, depth)
        raise self.fail(f"metadata key {key} has unknown value type {vtype} "
                        f"(GGUF defines 0-12)")

    def array(self, key: str, depth: int) -> Any:
        if depth >= MAX_ARRAY_NESTING:
            raise self.fail(f"metadata key {key} nests arrays deeper than {MAX_ARRAY_NESTING} levels")
        etype = self.u32(f"the element type of {key}")
        if etype in SCALAR_TYPES:
            dt = SCALAR_TYPES[etype]
            n = self.count(f"{key} element", dt.itemsize)
            arr = self.data[self.pos:self.pos + n * dt.itemsize].view(dt)
            self.pos += n * dt.itemsize
            return arr.view(np.uint8) != 0 if etype == 7 else arr  # bytes other than 0/1 must not leak into bools
        if etype == STRING:
            n = self.count(f"{key} element", 8)
            try:
                starts, end = scan_strings(self.buf, self.pos, n, self.size)
            except TruncatedStrings as t:
                raise self.fail(f"string {t.index} of {key} at byte {t.offset} needs {t.needed} bytes, "
                                f"past the end of the file ({self.size} bytes); the file is truncated or corrupt") from None
            region = self.data[self.pos:end]
            arr = StringArray(region, starts - self.pos, end - self.pos)
            self.pos = end
            return arr
        if etype == ARRAY:
            n = self.count(f"{key} element", 12)
            return [self.array(key, depth + 1) for _ in range(n)]
        raise self.fail(f"metadata key {key} is an array of unknown value type {etype} (GGUF defines 0-12)")

    # -- the whole header ------------------------------------------------------------------------------------
    def header(self) -> Header:
        if self.size < 4 or bytes(self.buf[:4]) != MAGIC:
            got = bytes(self.buf[:4])
            raise self.fail(f"not a GGUF file (starts with {got!r}, expected {MAGIC!r})")
        self.pos = 4
        version = self.u32("the version")
        if version not in VERSIONS:
            swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
            if swapped in VERSIONS:
                raise self.fail(f"a big-endian GGUF file (version {swapped}); rocmforge reads little-endian "
                                f"GGUF files only")
            raise self.fail(f"unsupported GGUF version {version} (rocmforge reads versions 2 and 3)")
        n_tensors = self.count("tensor", 8 + 4 + 8 + 4 + 8)  # name length, n_dims, one dim, type, offset
        n_kv = self.count("metadata key", 8 + 4 + 1)
        metadata: dict[str, Any] = {}
        value_types: dict[str, int] = {}
        for _ in range(n_kv):
            key_at = self.pos
            key = self.string("a metadata key")
            label = quote(key)
            if key in metadata:
                raise self.fail(f"metadata key {label} appears twice (again at byte {key_at})")
            vtype = self.u32(f"the value type of {label}")
            metadata[key] = self.value(vtype, label)
            value_types[key] = vtype
        tensors = [self.tensor_info() for _ in range(n_tensors)]
        return Header(version, metadata, value_types, tensors, self.pos)

    def tensor_info(self) -> RawTensorInfo:
        name = self.string("a tensor name")
        label = quote(name)
        n_dims = self.u32(f"the dimension count of tensor {label}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise self.fail(f"tensor {label} has {n_dims} dimensions (GGUF allows 1 to {MAX_DIMS})")
        self.need(8 * n_dims, f"the dimensions of tensor {label}")
        ne = struct.unpack_from(f"<{n_dims}Q", self.buf, self.pos)
        self.pos += 8 * n_dims
        ggml_type = self.u32(f"the type of tensor {label}")
        offset = self.u64(f"the data offset of tensor {label}")
        return RawTensorInfo(name, ne, ggml_type, offset)
