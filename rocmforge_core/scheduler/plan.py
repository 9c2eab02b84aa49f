"""The first planner: each call site runs on the best capable kernel of the preferred backend, else of "cpu",
else of "reference", ranked by ``Registry.kernels_for``.

A call site is named after the GGUF tensor it uses ("blk.7.ffn_down") or the layer part it computes
("blk.7.attn"); the engine asks for a kernel once per (site, concrete signature) and the ``Plan`` keeps every
answer with all candidates and their verdicts, so ``explain`` can show why each site runs where it does.

A kernel is asked about the call as its backend would make it: weights in the layout that backend's
``upload_weight`` gives them (a format may repack for it), so ``resident(backend)`` supplies the signature per
backend; without it the call's own signature is used for every backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rocmforge_core.errors import PluginError, UnsupportedError
from rocmforge_core.ops import Kernel, Signature
from rocmforge_core.registry import Candidate, Registry

FALLBACK_ORDER = ("cpu", "reference")


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
    """Every placement decided so far: (site, phase) -> the Choice of the first signature seen there, plus every
    (site, signature) -> Choice for the engine's lookups."""
    order: tuple[str, ...]
    choices: dict[tuple[str, str], Choice] = field(default_factory=dict)
    by_signature: dict[tuple[str, Signature], Choice] = field(default_factory=dict)
    fallbacks: int = 0  # run-time fallbacks (kernel failures); counted by the hybrid scheduler
    version: int = 0    # bumped whenever a decided choice is dropped or replaced: the engine re-records steps


def backend_order(registry: Registry, preferred: str) -> tuple[str, ...]:
    """The preferred backend, then the fallbacks, keeping only installed backends that can run here. The
    preferred one must be available: asking for hip on a machine without a GPU is an error, not a silent cpu."""
    backend = registry.backend(preferred)
    verdict = backend.available()
    if not verdict:
        raise PluginError(f"backend {preferred!r} cannot run here: {verdict.reason}")
    order = [preferred]
    for name in FALLBACK_ORDER:
        if name not in order and name in registry.backends and registry.backends[name].available():
            order.append(name)
    return tuple(order)


class Planner:
    def __init__(self, registry: Registry, backend: str, profile: str | Path | None = None):
        if profile is not None:
            raise UnsupportedError(f"profiles are not supported yet (got {profile}); run without --profile")
        self.registry = registry
        self.plan = Plan(backend_order(registry, backend))

    @property
    def preferred(self) -> str:
        return self.plan.order[0]

    def choose(self, site: str, phase: str, sig: Signature,
               resident: Callable[[str], Signature] | None = None) -> Choice:
        key = (site, sig)
        choice = self.plan.by_signature.get(key)
        if choice is None:
            choice = self._decide(site, phase, sig, resident or (lambda backend: sig))
            self.plan.by_signature[key] = choice
            self.plan.choices.setdefault((site, phase), choice)
        return choice

    def _decide(self, site: str, phase: str, sig: Signature, resident: Callable[[str], Signature]) -> Choice:
        considered: list[Candidate] = []
        for rank, backend in enumerate(self.plan.order):
            on_backend = resident(backend)
            candidates = self.registry.kernels_for(on_backend, backend)
            considered += candidates
            if candidates and candidates[0].verdict:
                why = ("preferred backend" if rank == 0 else
                       f"fallback: no capable kernel on {', '.join(self.plan.order[:rank])}")
                return Choice(site, phase, on_backend, candidates[0].kernel, considered, why)
        reasons = "; ".join(f"{c.kernel.name}: {c.verdict.reason}" for c in considered) or "no kernels registered"
        raise UnsupportedError(f"no installed kernel can run {site} as {sig} on {', '.join(self.plan.order)} "
                               f"({reasons})")
