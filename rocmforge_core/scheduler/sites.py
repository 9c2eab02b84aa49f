"""Call sites: one op call of a model's forward pass, as the scheduler sees it.

A site is named after the GGUF tensor it uses ("blk.7.ffn_down"), so profiles and ``explain`` can match it by
regex; its signature is the concrete call (shapes, dtypes, quant format, params). The same name appears once per
phase: ``prefill`` (a batch of prompt tokens, m > 1) and ``decode`` (one token per sequence, m = 1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rocmforge_core.ops import Signature, Verdict, no

PHASES = ("prefill", "decode")
# A step's inputs, which the engine keeps on its preferred backend; Site.inputs names them by these ids.
STEP_INPUTS = {-1: "token ids", -2: "positions", -3: "sequence ids", -4: "output rows", -5: "block tables",
               -6: "sampling history"}
_LAYER = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class Site:
    name: str
    op: str
    sig: Signature
    phase: str
    inputs: tuple[int, ...] | None = ()  # sites (indices in the step) whose outputs this one reads, and step
                                         # inputs (STEP_INPUTS ids); None: just the previous site
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


def availability(backend) -> Verdict:
    """``backend.available()``, with a backend whose check itself fails counted as unavailable (planning must
    not crash on one broken plugin)."""
    try:
        return backend.available()
    except Exception as exc:
        return no(f"its availability check raised {type(exc).__name__}: {exc}")


def phase_of(m: int) -> str:
    return "decode" if m == 1 else "prefill"
