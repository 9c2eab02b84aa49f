"""What the engine asks the planner (``scheduler.Planner``, hybrid.py) and keeps: a ``Choice`` per call site and
concrete signature, gathered in a ``Plan``.

A call site is named after the GGUF tensor it uses ("blk.7.ffn_down") or the layer part it computes
("blk.7.attn"); the engine asks for a kernel once per (site, concrete signature) and the ``Plan`` keeps every
answer with all candidates and their verdicts, so ``explain`` can show why each site runs where it does.

A kernel is asked about the call as its backend would make it: weights in the layout that backend's
``upload_weight`` gives them (a format may repack for it), so ``resident(backend)`` supplies the signature per
backend; without it the call's own signature is used for every backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rocmforge_core.ops import Kernel, Signature
from rocmforge_core.registry import Candidate


@dataclass
class Choice:
    """Where one call site runs for one concrete signature, and the alternatives that were considered."""
    site: str
    phase: str  # "prefill" or "decode"
    signature: Signature  # as the chosen backend runs it
    kernel: Kernel
    candidates: list[Candidate]  # of every backend considered, in order
    reason: str

    @property
    def backend(self) -> str:
        return self.kernel.backend


@dataclass
class Plan:
    """Every placement decided so far: (site, phase) -> the latest Choice made there, plus every
    (site, signature) -> Choice for the engine's lookups."""
    order: tuple[str, ...]
    choices: dict[tuple[str, str], Choice] = field(default_factory=dict)
    by_signature: dict[tuple[str, Signature], Choice] = field(default_factory=dict)
    fallbacks: int = 0  # run-time fallbacks (kernel failures); counted by the hybrid scheduler
    version: int = 0    # bumped whenever a decided choice is dropped or replaced: the engine re-records steps
