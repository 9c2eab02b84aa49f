"""open_gguf: a GGUF file memory-mapped, with its metadata, tensor infos, raw tensor views and model config."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from rocmforge_core.errors import GGUFError
from rocmforge_core.formats import QuantFormat, Weight
from rocmforge_core.gguf.ggml_types import GGML_TYPES, describe_type, plugin_for, type_name
from rocmforge_core.gguf.reader import DEFAULT_ALIGNMENT, INT64_MAX, VALUE_TYPE_NAMES, Parser, quote


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the file declares it. ``shape`` is numpy order (rows, cols): ggml's ne reversed.
    ``offset`` is absolute in the file; ``nbytes`` is 0 when the type's block geometry is unknown."""
    name: str
    ggml_type: int
    type_name: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int

    @property
    def rows(self) -> int:
        return int(np.prod(self.shape[:-1], dtype=np.int64))

    @property
    def row_bytes(self) -> int:
        return self.nbytes // self.rows if self.rows else 0


class GGUFFile:
    """An open GGUF file. Tensor data stays in the memory map: ``raw`` and ``weight`` return views, no copies."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        name = self.path.name
        try:
            size = self.path.stat().st_size
            if size == 0:
                raise GGUFError(f"{name}: the file is empty, not a GGUF file")
            mapped = np.memmap(self.path, dtype=np.uint8, mode="r")
        except OSError as exc:
            raise GGUFError(f"{name}: cannot open ({exc.strerror or exc})") from None
        self._data: np.ndarray | None = mapped.view(np.ndarray)
        header = Parser(self._data, name).header()
        self.version = header.version
        self.metadata: Mapping[str, Any] = MappingProxyType(header.metadata)
        self.value_types = header.value_types
        self.alignment = _alignment(header.metadata, header.value_types, name)
        self.data_offset = -(-header.header_end // self.alignment) * self.alignment
        self.tensors: dict[str, TensorInfo] = _tensor_infos(header.tensors, self.data_offset, self.alignment,
                                                            size, name)

    # -- lifetime --------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Drop this file's map; views handed out earlier stay valid (they keep the mapping alive)."""
        self._data = None

    def __enter__(self) -> "GGUFFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GGUFFile({str(self.path)!r}, v{self.version}, {len(self.metadata)} keys, {len(self.tensors)} tensors)"

    # -- tensors ---------------------------------------------------------------------------------------------
    def info(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise GGUFError(f"{self.path.name}: no tensor named {quote(name)}") from None

    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes as a read-only uint8 view (rows, row_bytes) of the mapped file."""
        info = self.info(name)
        if self._data is None:
            raise GGUFError(f"{self.path.name}: the file is closed; reopen it to read tensor {quote(name)}")
        if not info.nbytes:  # a type whose block geometry neither ggml's table nor a plugin gives
            raise self._missing_format(info)
        return self._data[info.offset:info.offset + info.nbytes].reshape(info.rows, info.row_bytes)

    def format_of(self, name: str, registry=None) -> QuantFormat:
        """The installed QuantFormat that decodes tensor ``name``; GGUFError naming the plugin if none does."""
        info = self.info(name)
        fmt = _registry(registry).format_by_type(info.ggml_type)
        if fmt is None:
            raise self._missing_format(info)
        return fmt

    def weight(self, name: str, registry=None) -> Weight:
        """The tensor as a host Weight in GGUF's own layout (a backend's upload_weight repacks it)."""
        fmt = self.format_of(name, registry)
        info = self.info(name)
        return Weight(name, fmt, info.shape, self.raw(name), meta={"ggml_type": info.ggml_type})

    def load_weight(self, name: str, backend, registry=None) -> Weight:
        """The tensor resident on ``backend``, in the layout its format's repacker for that backend gives it
        (the repacking hook: a repacker receives the read-only mapped view and returns a new Weight)."""
        return backend.upload_weight(self.weight(name, registry))

    def validate(self, registry=None) -> None:
        """Check that installed plugins provide every tensor type of the file (the engine calls this before
        loading a model); one GGUFError lists what is missing."""
        reg = _registry(registry)
        missing: dict[int, list[str]] = {}
        for info in self.tensors.values():
            if reg.format_by_type(info.ggml_type) is None:
                missing.setdefault(info.ggml_type, []).append(info.name)
        if missing:
            found = ", ".join(f"{describe_type(t)} ({len(names)} tensor{'s' * (len(names) > 1)}, e.g. {quote(names[0])})"
                              for t, names in sorted(missing.items()))
            hints = [plugin_for(GGML_TYPES[t][0]) for t in sorted(missing) if t in GGML_TYPES]
            raise GGUFError(f"{self.path.name}: no installed plugin provides {found}"
                            + (f"; install {', '.join(hints)}" if hints else ""))

    def _missing_format(self, info: TensorInfo) -> GGUFError:
        return GGUFError(f"{self.path.name}: tensor {quote(info.name)} has {describe_type(info.ggml_type)}, which no "
                         f"installed plugin provides{_install_hint(info.ggml_type)}")

    # -- model -----------------------------------------------------------------------------------------------
    @property
    def architecture(self) -> str:
        arch = self.metadata.get("general.architecture")
        if not isinstance(arch, str) or not arch:
            raise GGUFError(f"{self.path.name}: the metadata has no general.architecture string")
        return arch

    @cached_property
    def config(self):
        from rocmforge_core.gguf.config import model_config
        return model_config(self)


def open_gguf(path: str | os.PathLike) -> GGUFFile:
    """Open and parse a GGUF file (v2 or v3, little-endian); GGUFError with one sentence if it is unusable."""
    return GGUFFile(path)


def _registry(registry):
    if registry is not None:
        return registry
    from rocmforge_core.registry import get_registry
    return get_registry()


def _install_hint(ggml_type: int) -> str:
    entry = GGML_TYPES.get(ggml_type)
    return f"; install {plugin_for(entry[0])}" if entry else ""


def _alignment(metadata: Mapping[str, Any], value_types: dict[str, int], name: str) -> int:
    if "general.alignment" not in metadata:
        return DEFAULT_ALIGNMENT
    value, vtype = metadata["general.alignment"], value_types["general.alignment"]
    if vtype not in (0, 2, 4, 10):  # the unsigned integer types
        got = f"{value!r}" if isinstance(value, int) else f"a {VALUE_TYPE_NAMES[vtype]}"
        raise GGUFError(f"{name}: general.alignment must be an unsigned power of two, got {got}")
    if value == 0 or value & (value - 1):
        raise GGUFError(f"{name}: general.alignment must be an unsigned power of two, got {value}")
    return value


def _tensor_infos(raw_infos, data_offset: int, alignment: int, size: int, name: str) -> dict[str, TensorInfo]:
    infos: dict[str, TensorInfo] = {}
    for raw in raw_infos:
        t, label = raw.name, quote(raw.name)
        if t in infos:
            raise GGUFError(f"{name}: tensor {label} is declared twice")
        if 0 in raw.ne:
            raise GGUFError(f"{name}: tensor {label} has a zero dimension {list(raw.ne)}")
        n_elements = 1
        for d in raw.ne:
            n_elements *= d
        if n_elements > INT64_MAX:
            raise GGUFError(f"{name}: tensor {label} dimensions {list(raw.ne)} multiply to more than 2**63 - 1 elements")
        entry = _type_entry(raw.ggml_type)
        nbytes = 0
        if entry is not None:
            tname, block, type_size = entry
            if raw.ne[0] % block:
                raise GGUFError(f"{name}: tensor {label} rows of {raw.ne[0]} elements are not a whole number of "
                                f"{tname} blocks of {block}")
            nbytes = n_elements // block * type_size
        if raw.offset % alignment:
            raise GGUFError(f"{name}: tensor {label} data offset {raw.offset} is not a multiple of the alignment "
                            f"{alignment}")
        start = data_offset + raw.offset
        if start + nbytes > size:
            raise GGUFError(f"{name}: tensor {label} data (bytes {start} to {start + nbytes}) extends past the end of "
                            f"the file ({size} bytes); the file is truncated or corrupt")
        tname = entry[0] if entry else type_name(raw.ggml_type)
        infos[t] = TensorInfo(t, raw.ggml_type, tname, tuple(reversed(raw.ne)), start, nbytes)
    _check_overlaps(infos, name)
    return infos


def _type_entry(ggml_type: int) -> tuple[str, int, int] | None:
    """(name, block size, bytes per block) from ggml's table, or from an installed plugin for a type newer than
    the table."""
    if ggml_type in GGML_TYPES:
        return GGML_TYPES[ggml_type]
    fmt = _registry(None).format_by_type(ggml_type)
    return (fmt.name, fmt.block_size, fmt.type_size) if fmt is not None else None


def _check_overlaps(infos: dict[str, TensorInfo], name: str) -> None:
    ordered = sorted(infos.values(), key=lambda i: i.offset)
    for a, b in zip(ordered, ordered[1:]):
        if b.offset < a.offset + a.nbytes:
            raise GGUFError(f"{name}: tensors {quote(a.name)} and {quote(b.name)} overlap in the data section")
