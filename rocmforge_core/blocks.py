"""Numpy helpers shared by the format plugins: block-wise row processing, scale reads, bit unpacking.

A GGUF row is a run of fixed-size blocks. Format plugins write one function per direction that works on a
2-D array of whole blocks, ``(n_blocks, type_size)`` uint8 <-> ``(n_blocks, block_size)`` float32, and wrap it
with ``dequantizer`` / ``quantizer`` here, which validate row sizes and walk big tensors in chunks so that
temporaries stay cache-sized. Arithmetic follows ggml exactly: fp16 scales are widened to float32 first, and
every product is a float32 product, so that results are bit-exact with ggml (and gguf-py).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

import numpy as np

from rocmforge_core.errors import RocmforgeError
from rocmforge_core.formats import QuantFormat

BlockFn = Callable[[np.ndarray], np.ndarray]
CHUNK_ELEMENTS = 1 << 16  # elements per step: output and temporaries stay in L2


class RowSizeError(RocmforgeError, ValueError):
    """A row's length does not hold a whole number of a format's blocks."""


def dequantizer(name: str, block_size: int, type_size: int, fn: BlockFn) -> BlockFn:
    """Row-level dequantize, uint8 (..., row_bytes) -> float32 (..., row_elements), from a block-level ``fn``."""
    def dequantize(raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw)
        if raw.dtype != np.uint8:
            raise RowSizeError(f"{name} data must be raw bytes (uint8), got {raw.dtype}")
        return _map_rows(fn, raw, type_size, block_size, np.float32, block_size,
                         f"{name} rows must be a multiple of {type_size} bytes (one block of {block_size} elements)")
    return dequantize


def quantizer(name: str, block_size: int, type_size: int, fn: BlockFn) -> BlockFn:
    """Row-level quantize, float32 (..., row_elements) -> uint8 (..., row_bytes), from a block-level ``fn``."""
    def quantize(values: np.ndarray) -> np.ndarray:
        return _map_rows(fn, np.asarray(values, dtype=np.float32), block_size, type_size, np.uint8, block_size,
                         f"{name} rows must be a multiple of {block_size} elements")
    return quantize


def _map_rows(fn: BlockFn, rows: np.ndarray, width: int, out_width: int, dtype, block_size: int,
              requirement: str) -> np.ndarray:
    """Apply ``fn`` to the blocks of ``rows`` (last axis: whole blocks of ``width``), a chunk at a time."""
    if rows.ndim == 0 or rows.shape[-1] % width:
        raise RowSizeError(f"{requirement}, got rows of {rows.shape[-1] if rows.ndim else 'a scalar'}")
    blocks = rows.reshape(-1, width)
    out = np.empty((blocks.shape[0], out_width), dtype=dtype)
    step = max(1, CHUNK_ELEMENTS // block_size)
    for start in range(0, blocks.shape[0], step):
        out[start:start + step] = fn(np.ascontiguousarray(blocks[start:start + step]))
    return out.reshape(*rows.shape[:-1], rows.shape[-1] // width * out_width)


def block_format(plugin_file: str, name: str, ggml_type: int, block_size: int, type_size: int,
                 dequantize_blocks: BlockFn, random_blocks: Callable[[np.random.Generator, int], np.ndarray],
                 quantize_blocks: BlockFn | None = None,
                 repackers: dict[str, Callable] | None = None) -> QuantFormat:
    """A ``QuantFormat`` from block-level functions, with the device code found beside ``plugin_file``."""
    return QuantFormat(
        name=name, ggml_type=ggml_type, block_size=block_size, type_size=type_size,
        dequantize=dequantizer(name, block_size, type_size, dequantize_blocks),
        quantize=quantizer(name, block_size, type_size, quantize_blocks) if quantize_blocks else None,
        random_blocks=random_blocks, kernel_sources=device_sources(plugin_file), repackers=dict(repackers or {}))


def device_sources(plugin_file: str | Path) -> dict[str, Path]:
    """Backend name -> device-code file, for every ``device.<backend>`` file beside a format's plugin.py: a
    backend team adds its kernels to a format by dropping in a file, without touching the plugin."""
    here = Path(plugin_file).resolve().parent
    return {p.suffix[1:]: p for p in sorted(here.glob("device.*")) if p.is_file()}


def deferred(module: str, name: str = "repack") -> Callable:
    """``module.name``, imported on first call: a format names a backend's repacker (e.g. the cpu backend's, in
    the format's cpu.py) without loading that backend's code when the format registers."""
    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)
    call.__qualname__ = call.__name__ = f"{module}.{name}"
    return call


# -- reading fields ------------------------------------------------------------------------------------------
def f16(blocks: np.ndarray, offset: int) -> np.ndarray:
    """The fp16 field at byte ``offset`` of each block, widened to float32: (n_blocks, 1)."""
    return blocks[:, offset:offset + 2].view(np.float16).astype(np.float32)


def unpack_bits(packed: np.ndarray, bits: int, group: int) -> np.ndarray:
    """Split each byte into 8/bits fields, low bits first, ggml-style: bytes come in groups of ``group``; the
    output of one group is field 0 of all its bytes, then field 1 of all its bytes, and so on.

    (n, m) uint8 -> (n, m * 8 // bits) uint8. With group=1 this is plain little-endian bit order."""
    n, m = packed.shape
    per_byte = 8 // bits
    shifts = np.arange(0, 8, bits, dtype=np.uint8).reshape(1, 1, per_byte, 1)
    fields = (packed.reshape(n, m // group, 1, group) >> shifts) & np.uint8((1 << bits) - 1)
    return fields.reshape(n, m * per_byte)


def pack_bits(fields: np.ndarray, bits: int, group: int) -> np.ndarray:
    """Inverse of ``unpack_bits``: (n, k) small unsigned ints -> (n, k * bits // 8) uint8."""
    n, k = fields.shape
    per_byte = 8 // bits
    fields = fields.astype(np.uint8).reshape(n, k // (group * per_byte), per_byte, group)
    shifts = np.arange(0, 8, bits, dtype=np.uint8).reshape(1, 1, per_byte, 1)
    return np.bitwise_or.reduce(fields << shifts, axis=2).reshape(n, k * bits // 8)


def unpack_scale_min_6bit(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eight 6-bit scales and eight 6-bit mins from 12 bytes (ggml's get_scale_min_k4 layout):
    bytes 0-3 hold scales 0-3 in their low 6 bits, bytes 4-7 mins 0-3; bytes 8-11 hold the low 4 bits of
    scales 4-7 (low nibble) and mins 4-7 (high nibble), whose top 2 bits sit in the spare bits of bytes 0-7."""
    lo, mid, hi = packed[:, 0:4], packed[:, 4:8], packed[:, 8:12]
    scales = np.concatenate([lo & 0x3F, (hi & 0x0F) | ((lo >> 2) & 0x30)], axis=1)
    mins = np.concatenate([mid & 0x3F, (hi >> 4) | ((mid >> 2) & 0x30)], axis=1)
    return scales, mins


def unpack_scales_6bit_16(packed: np.ndarray) -> np.ndarray:
    """Sixteen 6-bit values from 12 bytes: low 4 bits from bytes 0-7 (low nibbles, then high nibbles), top
    2 bits from bytes 8-11 (2-bit fields, low first). Returned unsigned (0..63)."""
    low = unpack_bits(packed[:, 0:8], 4, 8)
    high = unpack_bits(packed[:, 8:12], 2, 4)
    return low | (high << np.uint8(4))


def grouped(d: np.ndarray, scales: np.ndarray, q: np.ndarray, dmin: np.ndarray | None = None,
            mins: np.ndarray | None = None) -> np.ndarray:
    """Two-level scaling: per group of weights x = (d * scale) * q, less (dmin * min) when given, with the
    float32 products grouped as ggml does. d, dmin (n, 1) float32; scales, mins (n, groups); q (n, groups * k)."""
    n, groups = scales.shape
    x = (d * scales.astype(np.float32)).reshape(n, groups, 1) * q.reshape(n, groups, -1).astype(np.float32)
    if dmin is not None:
        x -= (dmin * mins.astype(np.float32)).reshape(n, groups, 1)
    return x.reshape(n, -1)


def round_half_away(x: np.ndarray) -> np.ndarray:
    """C's roundf for float32 (halves away from zero); the fraction a - floor(a) is exact in float32."""
    a = np.abs(x)
    whole = np.floor(a)
    return np.copysign(whole + (a - whole >= np.float32(0.5)), x)


def inverse_or_zero(d: np.ndarray) -> np.ndarray:
    """1/d in float32, 0 where d is 0 (ggml's `id = d ? 1.0f/d : 0.0f`)."""
    with np.errstate(divide="ignore"):
        return np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)


def abs_max_signed(blocks: np.ndarray) -> np.ndarray:
    """Per block, the value of largest magnitude, keeping its sign (first one on ties): (n, 1)."""
    idx = np.abs(blocks).argmax(axis=1)[:, None]
    return np.take_along_axis(blocks, idx, axis=1)


def f16_bytes(values: np.ndarray) -> np.ndarray:
    """float32 (n, k) -> fp16 bytes (n, 2k), rounded to nearest even as ggml's fp32->fp16."""
    with np.errstate(over="ignore"):  # beyond fp16 range gives inf, as in ggml
        return np.ascontiguousarray(values.astype(np.float16)).view(np.uint8)


# -- random blocks for tests ---------------------------------------------------------------------------------
BLOCK_SCALES = (1e-4, 3e-2)   # fp16 scales of 32-weight blocks in real models (gemma-3, SmolLM2)
SUPER_SCALES = (1e-6, 1e-3)   # super-block scales of 256-weight formats, multiplied by 6-bit sub-scales


def random_scales(rng: np.random.Generator, shape: tuple[int, ...], scale_range: tuple[float, float],
                  signed: bool = False) -> np.ndarray:
    """fp16 scales spread log-uniformly over ``scale_range`` (optionally with random signs)."""
    low, high = np.log(np.float32(scale_range[0])), np.log(np.float32(scale_range[1]))
    # float32 throughout: a synthetic 8B file has ~1e8 scales
    mag = np.exp(low + (high - low) * rng.random(shape, dtype=np.float32))
    if signed:
        mag = np.where(rng.random(shape, dtype=np.float32) < 0.5, -mag, mag)
    return mag.astype(np.float16)


def random_bytes(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform random uint8 of ``shape``, drawn 8 bytes at a time (5-10x faster than integers(0, 256))."""
    n = int(np.prod(shape, dtype=np.int64))
    words = rng.integers(0, np.iinfo(np.uint64).max, size=-(-n // 8), dtype=np.uint64, endpoint=True)
    return words.view(np.uint8)[:n].reshape(shape)


def random_blocks_with_f16(type_size: int, offsets: tuple[int, ...], signed: tuple[int, ...] = (),
                           scale_range: tuple[float, float] = BLOCK_SCALES):
    """``random_blocks(rng, n)``: random bytes, with a realistic fp16 scale at each byte offset in ``offsets``
    (those in ``signed`` get random signs, e.g. a block minimum)."""
    def random_blocks(rng: np.random.Generator, n: int) -> np.ndarray:
        out = random_bytes(rng, (n, type_size))
        for off in offsets:
            out[:, off:off + 2] = random_scales(rng, (n, 1), scale_range, signed=off in signed).view(np.uint8)
        return out
    return random_blocks
