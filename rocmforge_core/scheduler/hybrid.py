"""The hybrid planner: placement of whole steps (profiles, measured costs, copy minimisation, placement.py) and
transparent fallback at run time, behind the interface the engine uses (``plan``, ``preferred``, ``choose``).

``prepare(steps)`` places a traced decode step, then a prefill step (an op with state, attention, follows decode:
the layer's KV cache lives there). ``choose(site, phase, sig)`` answers each concrete call from that placement: the first kernel
of the site's ranked candidates that is not marked bad and accepts the call as its backend runs it. A site the
trace did not see is placed alone (same origin rules, no copy minimisation).

When a kernel raises, or returns non-finite values where the reference does not, ``fail`` marks that
(kernel, signature) bad for the rest of the run, drops every cached choice that used it, logs one warning, counts
it (``plan.fallbacks``, ``events``) and returns the next candidate. With ``strict`` it raises instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from rocmforge_core import ops
from rocmforge_core.errors import BackendError, UnsupportedError
from rocmforge_core.ops import Kernel, Signature
from rocmforge_core.scheduler.costs import CostModel
from rocmforge_core.scheduler.placement import Placer, SitePlan, StepPlan
from rocmforge_core.scheduler.plan import Choice, Plan
from rocmforge_core.scheduler.profile import AUTO, Profile, load_profile
from rocmforge_core.program import Site
from rocmforge_core.scheduler.tuning import TuningCache

log = logging.getLogger("rocmforge.scheduler")

Resident = Callable[[str], Signature]


class KernelFailure(BackendError):
    """A kernel failed and --strict forbids falling back."""


class Planner:
    def __init__(self, registry, backend: str | None = None, profile: str | Path | Profile | None = None, *,
                 tuning: TuningCache | None = None, use_tuning: bool = True, strict: bool = False):
        self.registry = registry
        self.profile = load_profile(profile, registry) if isinstance(profile, (str, Path)) else profile
        if tuning is None and use_tuning:
            tuning = TuningCache.for_registry(registry)
        self.tuning = tuning if tuning is not None and not tuning.empty else None
        self.costs = CostModel(registry, self.tuning)
        self.placer = Placer(registry, backend, self.profile, self.costs)
        self.strict = strict
        self.plan = Plan(self._order())
        self.steps: dict[str, StepPlan] = {}
        self.sites: dict[tuple[str, str], SitePlan] = {}
        self.bad: set[tuple[str, Signature]] = set()
        self.kv_moved: dict[str, str] = {}  # site with state -> backend its state moved to after a fallback
        self.events: list[dict] = []

    def _order(self) -> tuple[str, ...]:
        """Every backend a site may run on, the default's first (the engine keeps per-step inputs there)."""
        default = [b for b in self.placer.default.backends if b != AUTO]
        usable = [b for b in sorted(self.registry.backends) if self.placer.usable(b)]
        return tuple(dict.fromkeys(default + usable))

    @property
    def preferred(self) -> str:
        return self.plan.order[0]

    # -- planning ---------------------------------------------------------------------------------------------
    def prepare(self, steps: dict[str, list[Site]]) -> None:
        """Place traced steps: decode first, then prefill with each op that has state where its decode runs."""
        kv: dict[str, str] = {}
        for phase in sorted(steps, key=lambda p: p != "decode"):
            step = self.placer.place(steps[phase], phase, kv)
            if phase == "decode":
                kv = {p.site.name: p.backend for p in step.sites if ops.spec(p.site.op).state}
            self.steps[phase] = step
            self.sites.update({(p.site.name, phase): p for p in step.sites})

    def choose(self, site: str, phase: str, sig: Signature, resident: Resident | None = None) -> Choice:
        key = (site, sig)
        choice = self.plan.by_signature.get(key)
        if choice is None:
            choice = self._decide(site, phase, sig, resident or (lambda backend: sig))
            self.plan.by_signature[key] = choice
            self.plan.choices[(site, phase)] = choice  # the latest decision, which a fallback may have changed
        return choice

    def _decide(self, site: str, phase: str, sig: Signature, resident: Resident) -> Choice:
        planned = self.sites.get((site, phase))
        if planned is None or planned.site.op != sig.op:
            planned = self._place_alone(site, phase, sig)
        refused = []
        ranked = planned.ranked
        if site in self.kv_moved:  # both phases of a layer share one KV cache
            ranked = [k for k in ranked if k.backend == self.kv_moved[site]]
        for kernel in ranked:
            if (kernel.name, sig) in self.bad:
                refused.append(f"{kernel.name}: failed earlier in this run")
                continue
            on_backend = resident(kernel.backend)
            verdict = kernel.check(on_backend)
            if verdict:
                return Choice(site, phase, on_backend, kernel, planned.candidates, self._reason(planned, kernel))
            refused.append(f"{kernel.name}: {verdict.reason}")
        raise UnsupportedError(f"no kernel left to run {site} ({phase}) as {sig}: {'; '.join(refused)}")

    def _place_alone(self, site: str, phase: str, sig: Signature) -> SitePlan:
        step = self.placer.place([Site(site, sig.op, sig, phase)], phase)
        self.sites[(site, phase)] = step.sites[0]
        return step.sites[0]

    @staticmethod
    def _reason(planned: SitePlan, kernel: Kernel) -> str:
        why = planned.origin.describe()
        if kernel is not planned.kernel:
            why += f"; {planned.kernel.name} did not take this call, next candidate"
        return "; ".join(planned.notes + [why])

    # -- run-time fallback ------------------------------------------------------------------------------------
    def fail(self, site: str, phase: str, sig: Signature, kernel: Kernel, problem: str,
             resident: Resident | None = None) -> Choice:
        """``kernel`` failed on ``sig`` at ``site``: the next candidate, or KernelFailure under --strict."""
        if self.strict:
            raise KernelFailure(f"kernel {kernel.name} {problem} at {site} ({phase}), and --strict forbids "
                                "falling back; run without --strict to continue on the next candidate")
        self.bad.add((kernel.name, sig))
        for key, choice in list(self.plan.by_signature.items()):
            if choice.kernel is kernel and key[1] == sig:  # every site making this call re-plans on next use
                del self.plan.by_signature[key]
        replacement = self.choose(site, phase, sig, resident)
        if ops.spec(sig.op).state and replacement.backend != kernel.backend:
            self.kv_moved[site] = replacement.backend
            for other in [key for key, c in self.plan.by_signature.items() if key[0] == site and c is not replacement]:
                del self.plan.by_signature[other]
        self.plan.fallbacks += 1
        self.plan.version += 1  # recorded decode steps hold the failed kernel: the engine records them again
        self.events.append({"site": site, "phase": phase, "kernel": kernel.name, "signature": str(sig),
                            "problem": problem, "replacement": replacement.kernel.name})
        log.warning("rocmforge: kernel %s %s at %s (%s); using %s for the rest of the run", kernel.name, problem,
                    site, phase, replacement.kernel.name)
        return replacement

    # -- explanation ------------------------------------------------------------------------------------------
    def tuning_status(self) -> dict:
        cache = self.tuning
        stale = sorted(cache.stale) if cache else []
        if cache is None:
            status = "estimated (no tuning data for this machine; run `rocmforge tune --model FILE`)"
        else:
            measured = sum(p.cost.measured for s in self.steps.values() for p in s.sites)
            total = sum(len(s.sites) for s in self.steps.values())
            status = f"{measured} of {total} sites measured ({cache.path})"
            if stale:
                status += f"; ignored measurements of changed plugins: {', '.join(stale)} (re-run rocmforge tune)"
        return {"status": status, "cache": str(cache.path) if cache else None, "stale": stale}
