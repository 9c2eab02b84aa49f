"""Kernel sources: one translation unit = the prelude, optionally a format's device code, then one kernels/*.hip
file. ``Unit`` names such a build (with its defines); ``all_units`` lists every build the backend can make, for
the compile checks and the ahead-of-time build."""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

KERNEL_DIR = Path(__file__).resolve().parent / "kernels"
PRELUDE = "rf_prelude.h"

# (head dim, value head dim, f16 cache) builds checked ahead of time; others compile on first use.
ATTENTION_SHAPES = ((64, 64, 0), (64, 64, 1), (128, 128, 0), (128, 128, 1), (256, 256, 0), (256, 256, 1))


@dataclass(frozen=True)
class Unit:
    """One compilation: ``file`` from kernels/, the format whose device code it includes (quant.hip only),
    compile-time defines, and whether floating-point contraction is off (bit-exact dequantization)."""
    file: str
    fmt: str = ""
    fmt_source: str = ""  # path of the format's device.hip
    defines: tuple[tuple[str, int], ...] = ()
    exact: bool = False

    @property
    def label(self) -> str:
        d = ",".join(f"{k}={v}" for k, v in self.defines)
        return f"{self.file}{'[' + self.fmt + ']' if self.fmt else ''}{'{' + d + '}' if d else ''}{' exact' if self.exact else ''}"

    def source(self) -> str:
        parts = [_read(KERNEL_DIR / PRELUDE)]
        if self.fmt_source:
            parts.append(_read(Path(self.fmt_source)))
        parts.append(_read(KERNEL_DIR / self.file))
        return "\n".join(parts)

    def key(self, arch: str, wave: int, compiler: str) -> str:
        """Cache key: source hash, target, defines, fp mode and compiler version."""
        h = hashlib.sha256()
        for part in (self.source(), arch, str(wave), repr(self.defines), str(self.exact), compiler):
            h.update(part.encode())
            h.update(b"\0")
        return h.hexdigest()[:40]


def _read(path: Path) -> str:
    # #line keeps compiler messages pointing at the real file and line.
    return f'#line 1 "{path.name if path.parent == KERNEL_DIR else path}"\n' + path.read_text()


def format_source(fmt) -> str:
    """The path of a format's HIP device code, or '' when it has none."""
    src = getattr(fmt, "kernel_sources", {}).get("hip")
    return str(src) if src and Path(src).is_file() else ""


@functools.lru_cache(maxsize=None)
def _text(path: str) -> str:
    return Path(path).read_text() if path else ""


def has_dot8_q8_source(path: str) -> bool:
    """Whether a format's device code has the 8-bit-activation dot (rf_dot8_q8)."""
    return "RF_HAS_DOT8_Q8" in _text(path)


def has_dot8_q8(fmt) -> bool:
    return has_dot8_q8_source(format_source(fmt))


def _defined(path: str, name: str) -> int:
    """The number a format's device code (at ``path``) #defines ``name`` to, else 0."""
    match = re.search(rf"^#define {name} (\d+)", _text(path), re.M)
    return int(match.group(1)) if match else 0


def chunk_size(path: str) -> int:
    """Elements per rf_chunk_load/rf_chunk_dot chunk (RF_CHUNK) when a format's device code (at ``path``) has one, else 0:
    its decode products then take whole chunks per lane."""
    return _defined(path, "RF_CHUNK")


# The (RT, NT) instances of rf_mmq in kernels/quant.hip: RT tiles of 16 weight rows, NT tiles of 8 rows of x.
MMQ_TILES = ((1, 1), (2, 2), (2, 4), (2, 8))


def mma_tile(m: int) -> tuple[int, int]:
    """The rf_mmq instance for m rows of x (m <= 64): the fewest tiles of 8 that hold them."""
    return next((rt, nt) for rt, nt in MMQ_TILES if 8 * nt >= m)


def mma_unit(path: str) -> int:
    """Elements per tile-product unit (RF_MMA_UNIT) when a format's device code (at ``path``) has the tile-product
    interface, else 0."""
    return _defined(path, "RF_MMA_UNIT")


def quant_unit(fmt, exact: bool = False) -> Unit:
    return Unit("quant.hip", fmt.name, format_source(fmt), (), exact)


def attention_unit(d: int, dv: int, kv_f16: bool) -> Unit:
    return Unit("attention.hip", defines=(("RF_D", d), ("RF_DV", dv), ("RF_KV_F16", int(kv_f16))))


ELEMENTWISE = Unit("elementwise.hip")
SAMPLE = Unit("sample.hip")


def all_units(formats) -> list[Unit]:
    """Every build: the shared kernels, attention for common head sizes, and the quantized-weight kernels of
    every format that ships HIP device code (in both floating-point modes)."""
    units = [ELEMENTWISE, SAMPLE] + [attention_unit(d, dv, bool(f16)) for d, dv, f16 in ATTENTION_SHAPES]
    for fmt in sorted(formats, key=lambda f: f.name):
        if format_source(fmt):
            units += [quant_unit(fmt, exact=False), quant_unit(fmt, exact=True)]
    return units
