"""Call sites: one op call of a model's forward pass, as the scheduler sees it.

A site is named after the GGUF tensor it uses ("blk.7.ffn_down"), so profiles and ``explain`` can match it by
regex; its signature is the concrete call (shapes, dtypes, quant format, params). The same name appears once per
phase: ``prefill`` (a batch of prompt tokens, m > 1) and ``decode`` (one token per sequence, m = 1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rocmforge_core.ops import Signature

PHASES = ("prefill", "decode")
_LAYER = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class Site:
    name: str
    op: str
    sig: Signature
    phase: str
    inputs: tuple[int, ...] = ()   # indices (in the site sequence) of the sites whose outputs this one reads
    weight: str = ""               # GGUF tensor this site reads, if any
    weight_bytes: int = 0
    out_bytes: int = 0             # size of its result, what a copy to another backend moves

    @property
    def layer(self) -> int | None:
        found = _LAYER.match(self.name)
        return int(found.group(1)) if found else None

    @property
    def fmt(self) -> str | None:
        """The quant format of the site's weight: GGUF type names are upper case, plain tensors' dtypes not."""
        for arg in self.sig.args:
            if arg.dtype[:1].isupper():
                return arg.dtype
        return None

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.phase)


def phase_of(m: int) -> str:
    return "decode" if m == 1 else "prefill"
