"""Placement: every call site of one forward step onto a kernel, minimising compute plus copies.

For each site the scheduler first settles *which backends may run it* (its origin, highest first): the first
matching profile rule, the profile's per-op choice, the partial-offload split, then the default chain (the
``--backend`` option or the profile's default, followed by cpu and reference). The first backend of that list with
a capable kernel (``Registry.kernels_for``) is the site's home; when none of the listed backends can run the call,
the default chain is tried next and the site is marked as a fallback.

Then the kernels are picked to minimise the step's total cost. A site's options are the kernels of its home
backend; for cheap element-wise ops that nothing pinned (no rule, op choice or offload), also the capable kernels
of the first chain backend of each *other memory* (all host backends share one), so that e.g. an ``add`` between
two ops forced onto the cpu joins them instead of bouncing to the GPU and back, while a host-only chain
(``--backend reference``, ``--backend cpu``) never moves an op for nothing; under ``default: auto``, every capable
kernel of every available backend. A choice costs the kernel's measured (tuning cache) or estimated time plus the
copies its inputs need: an input made on a backend of another memory is copied once per step and backend (a copy
an earlier reader made is reused), step inputs (token ids, positions, ...) live on the preferred backend, and the
step's result is read back to the host. A dynamic programme along the sequence (exact when each site reads only
its predecessor) gives a first assignment; a local search over the real dataflow then moves single sites while
that lowers the exact total. Ties keep the earlier option: home backend first, then ``Registry.kernels_for``
order (priority, backend, name), so plans are stable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from rocmforge_core import ops
from rocmforge_core.errors import PluginError, UnsupportedError
from rocmforge_core.ops import Kernel, no
from rocmforge_core.registry import Candidate
from rocmforge_core.scheduler.costs import Cost, CostModel
from rocmforge_core.scheduler.offload import Split, layer_span, split_layers
from rocmforge_core.scheduler.profile import AUTO, Profile
from rocmforge_core.scheduler.residency import LayoutProbe
from rocmforge_core.scheduler.rules import Origin
from rocmforge_core.program import Site
from rocmforge_core.scheduler.sites import availability

log = logging.getLogger("rocmforge.scheduler")

HOST = "host"
READBACK = -100  # Copy.source_site of the step result's read-back


@dataclass(frozen=True)
class Copy:
    source_site: int   # index of the producing site, a step input's id (sites.STEP_INPUTS), or READBACK
    source: str
    dest: str
    nbytes: int
    cost: Cost


@dataclass
class SitePlan:
    site: Site
    origin: Origin
    candidates: list[Candidate]      # every kernel of the op, with its verdict
    ranked: list[Kernel]             # capable kernels in the order a run-time fallback walks them
    kernel: Kernel
    cost: Cost
    copies: list[Copy] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    auto: bool = False  # placed by costs alone (default: auto)

    @property
    def backend(self) -> str:
        return self.kernel.backend


@dataclass
class StepPlan:
    phase: str
    sites: list[SitePlan]
    split: Split | None = None
    readback: Copy | None = None

    @property
    def copies(self) -> list[Copy]:
        return [c for s in self.sites for c in s.copies] + ([self.readback] if self.readback else [])


class Placer:
    def __init__(self, registry, backend: str | None = None, profile: Profile | None = None,
                 costs: CostModel | None = None, resident=None):
        self.registry = registry
        self.resident = resident or LayoutProbe(registry)
        self.profile = profile or Profile()
        self.costs = costs or CostModel(registry)
        self.notes: list[str] = []
        self._available: dict[str, bool] = {}
        self.auto = self._chain(AUTO)[1:]
        if backend is not None:
            verdict = availability(self.registry.backend(backend))
            if not verdict:  # an explicit request is not silently turned into cpu
                raise PluginError(f"backend {backend!r} cannot run here: {verdict.reason}")
            self.default = Origin(self._chain(backend), "option", f"--backend {backend}")
        elif self.profile.default is not None:
            self.default = Origin(self._profile_chain(self.profile.default), "default", self.profile.default.where)
        else:
            self.default = Origin(self._chain(AUTO), "default", "no --backend and no profile default: auto")

    @property
    def input_backend(self) -> str:
        """Where the engine keeps a step's inputs (token ids, positions, block tables): the preferred backend."""
        return next(b for b in self.default.backends if b != AUTO)

    def _profile_chain(self, default: Origin) -> tuple[str, ...]:
        """The chain of the profile's default backends. As with --backend, none of them being able to run here is
        an error, not a silent run on the host; when only some cannot, the run goes on on the others, with a
        warning naming them."""
        if default.backends == (AUTO,):
            return self._chain(AUTO)
        refused = {}
        for name in default.backends:
            verdict = availability(self.registry.backend(name))
            if not verdict:
                refused[name] = verdict.reason
        reasons = "; ".join(f"{name}: {why}" for name, why in refused.items())
        if len(refused) == len(default.backends):
            names = ", ".join(default.backends)
            raise PluginError(f"the profile's default backend{'s' * (len(refused) > 1)} {names} ({default.where}) "
                              f"cannot run here ({reasons}); list one that can after it, e.g. default: "
                              f"[{default.backends[0]}, cpu], or pass --backend")
        if refused:
            note = (f"the profile's default backend{'s' * (len(refused) > 1)} {', '.join(refused)} "
                    f"({default.where}) cannot run here ({reasons}); using the next one listed")
            self.notes.append(note)
            log.warning("rocmforge: warning: %s", note)
        return self._chain(*default.backends)

    # -- which backends may run a site --------------------------------------------------------------------
    def _chain(self, *preferred: str) -> tuple[str, ...]:
        """The given backends (``auto``: every available one, devices first) followed by the host fallbacks (the
        oracle last), keeping the installed backends that can run here."""
        if preferred == (AUTO,):
            names = sorted(self.registry.backends, key=lambda n: (self.registry.backends[n].is_host,
                                                                   self.registry.backends[n].oracle, n))
            return (AUTO,) + tuple(n for n in names if self.usable(n))
        for name in preferred:
            self.registry.backend(name)  # an unknown name is an error, with an install hint
        chain = [n for n in dict.fromkeys(preferred + self.registry.fallbacks()) if self.usable(n)]
        if not chain:
            raise PluginError(f"none of the backends {', '.join(preferred)} can run here")
        return tuple(chain)

    def usable(self, name: str) -> bool:
        if name not in self._available:
            be = self.registry.backends.get(name)
            self._available[name] = be is not None and bool(availability(be))
        return self._available[name]

    def origin(self, index: int, site: Site, split: Split | None, span: tuple[int, int]) -> Origin:
        rule = self.profile.first_rule(site)
        if rule is not None:
            return Origin(rule.backends, "rule", rule.where, rule.why)
        if site.op in self.profile.ops:
            return self.profile.ops[site.op]
        if split is not None:
            gpu = split.on_gpu(index, site, *span)
            host = next((n for n in self.registry.fallbacks() if self.usable(n)), "reference")
            return Origin((self.profile.gpu_backend if gpu else host,), "offload", self.profile.offload_where,
                          split.describe())
        return self.default

    # -- the plan ---------------------------------------------------------------------------------------------
    def place(self, sites: list[Site], phase: str = "", kv_backends: dict[str, str] | None = None) -> StepPlan:
        """Place one step. ``kv_backends`` (site -> backend) pins a site whose op has state (OpSpec.state: the
        KV cache) to where that state lives, so that prefill and decode of a layer share one cache."""
        split = None
        if self.profile.offloads:
            split = split_layers(sites, self.profile.gpu_layers, self.profile.gpu_memory, self.profile.context)
        span = layer_span(sites)
        plans, options = [], []
        for i, site in enumerate(sites):
            plan, opts = self._site(i, site, split, span, (kv_backends or {}).get(site.name))
            plans.append(plan)
            options.append(opts)
        self._solve(sites, plans, options)
        last = plans[-1] if plans else None
        readback = None
        if last is not None and self.costs.crosses(last.backend, HOST):
            readback = Copy(READBACK, last.backend, HOST, last.site.out_bytes,
                            self.costs.copy(last.site.out_bytes, last.backend, HOST))
        return StepPlan(phase or (sites[0].phase if sites else ""), plans, split, readback)

    def _site(self, index: int, site: Site, split, span, kv: str | None) -> tuple[SitePlan, list[Kernel]]:
        origin = self.origin(index, site, split, span)
        stateful = bool(ops.spec(site.op).state)
        if kv is not None and stateful:
            origin = Origin((kv,), "kv-cache", "", f"the layer's KV cache is on {kv}, where decode runs it")
        candidates = self.candidates(site)
        capable: dict[str, list[Kernel]] = {}
        for c in candidates:
            if c.verdict:
                capable.setdefault(c.kernel.backend, []).append(c.kernel)
        auto = origin.backends[:1] == (AUTO,)
        listed = [b for b in (self.auto if auto else origin.backends) if self.usable(b)]
        chain = list(dict.fromkeys(listed + [b for b in self.default.backends if b != AUTO]))
        notes = []
        home = next((b for b in chain if capable.get(b)), None)
        if home is None:
            reasons = "; ".join(f"{c.kernel.name}: {c.verdict.reason}" for c in candidates) or "no kernels"
            raise UnsupportedError(f"no installed kernel can run {site.name} ({site.phase}) as {site.sig} on "
                                   f"{', '.join(chain)}: {reasons}")
        skipped = [b for b in origin.backends if not auto and b != home and
                   (b not in chain or chain.index(b) < chain.index(home))]
        if skipped:
            notes.append(f"fallback to {home}: " + "; ".join(
                f"{b}: {self._refusal(b, candidates) if b in chain else 'not available here'}" for b in skipped))
        if kv is not None and stateful:
            if home != kv:
                raise UnsupportedError(f"{site.name} ({site.phase}) cannot run on {kv}, which holds its KV cache: "
                                       f"{self._refusal(kv, candidates)}")
            opts = list(capable[kv])
        elif auto:
            opts = [k for b in listed for k in capable.get(b, [])]
        elif ops.spec(site.op).cheap and origin.kind in ("default", "option"):
            # Moving only pays where it saves a copy: offer the first capable backend of each other memory.
            others = {}
            for b in chain:
                if capable.get(b) and self._memory(b) != self._memory(home):
                    others.setdefault(self._memory(b), b)
            opts = capable[home] + [k for b in others.values() for k in capable[b]]
        else:
            opts = list(capable[home])
        ranked = _unique([k for b in [home] + chain + sorted(capable) for k in capable.get(b, [])])
        plan = SitePlan(site, origin, candidates, ranked, opts[0], Cost(0.0, False), notes=notes, auto=auto)
        return plan, opts

    def _memory(self, backend: str) -> str:
        """Backends sharing memory (every host backend) read each other's tensors without copies."""
        return "host" if self.registry.backends[backend].is_host else backend

    def candidates(self, site: Site) -> list[Candidate]:
        """Every kernel of the site's op, each asked about the call as its backend would run it."""
        found = []
        for name in sorted(self.registry.backends):
            if self.usable(name):
                found += self.registry.kernels_for(self.resident(site.sig, name), name)
            else:
                why = no(f"backend {name} is not available here")
                found += [Candidate(c.kernel, why) for c in self.registry.kernels_for(site.sig, name)]
        return sorted(found, key=lambda c: (not c.verdict.ok, -c.kernel.priority, c.kernel.backend, c.kernel.name))

    @staticmethod
    def _refusal(backend: str, candidates: list[Candidate]) -> str:
        mine = [c for c in candidates if c.kernel.backend == backend]
        if not mine:
            return "no kernel for this op"
        more = f" (and {len(mine) - 2} more kernels)" if len(mine) > 2 else ""
        return "; ".join(f"{c.kernel.name} says {c.verdict.reason}" for c in mine[:2]) + more

    def _solve(self, sites: list[Site], plans: list[SitePlan], options: list[list[Kernel]]) -> None:
        n = len(sites)
        if not n:
            return
        # Nodes 0..n-1 are the sites; the step's inputs (tokens, positions, ...) follow, on the input backend.
        step_inputs = sorted({j for s in sites for j in (s.inputs or ()) if j < 0}, reverse=True)
        node = {j: n + k for k, j in enumerate(step_inputs)}
        inputs = [tuple(dict.fromkeys(node.get(j, j) for j in (s.inputs if s.inputs is not None else (i - 1,))
                                      if j < 0 or j < i)) for i, s in enumerate(sites)]
        tokens = max((a.shape[0] for a in sites[0].sig.args if a.dtype == "i32" and a.shape), default=1)
        out_bytes = [s.out_bytes for s in sites] + [4 * tokens] * len(step_inputs)
        consumers: list[list[int]] = [[] for _ in out_bytes]
        for i, ins in enumerate(inputs):
            for j in ins:
                consumers[j].append(i)
        graph = _Graph(n, inputs, consumers, out_bytes, [self.input_backend] * len(step_inputs),
                       {n + k: j for k, j in enumerate(step_inputs)})
        op_cost = [[self.costs.op(sites[i], k) for k in options[i]] for i in range(n)]
        # A cheap op offered another memory only to save copies is charged its home kernel's time there: it moves
        # when that removes copies, never on the strength of one eager timing (a device's per-op figure misses
        # what a captured step saves).
        decide = [[op_cost[i][j if plans[i].auto or k.backend == plans[i].kernel.backend else 0]
                   for j, k in enumerate(options[i])] for i in range(n)]
        pick = self._viterbi(sites, options, decide, inputs)
        pick = self._refine(graph, options, decide, pick)
        backends = [options[i][p].backend for i, p in enumerate(pick)] + graph.input_backends
        for i in range(n):
            kernel = options[i][pick[i]]
            plans[i].kernel, plans[i].cost = kernel, op_cost[i][pick[i]]
            plans[i].copies = self._copies(i, backends, graph)
            plans[i].ranked = [kernel] + [k for k in plans[i].ranked if k is not kernel]

    def _viterbi(self, sites, options, op_cost, inputs) -> list[int]:
        """A first assignment: dynamic programme along the sequence where a site pays for copying the inputs it
        reads from its predecessor only (exact for a chain; ``_refine`` handles the rest)."""
        n = len(sites)
        best: list[list[tuple[float, int]]] = []
        for i in range(n):
            row = []
            for j, kernel in enumerate(options[i]):
                choice = None
                for p in range(len(options[i - 1]) if i else 1):
                    total = (best[i - 1][p][0] if i else 0.0) + op_cost[i][j].seconds
                    if i and i - 1 in inputs[i]:
                        total += self.costs.copy(sites[i - 1].out_bytes, options[i - 1][p].backend,
                                                 kernel.backend).seconds
                    if choice is None or total < choice[0] - 1e-12:
                        choice = (total, p)
                row.append(choice)
            best.append(row)
        last = min(range(len(options[-1])), key=lambda j: (
            best[-1][j][0] + self.costs.copy(sites[-1].out_bytes, options[-1][j].backend, HOST).seconds, j))
        pick = [0] * n
        for i in range(n - 1, -1, -1):
            pick[i] = last
            last = best[i][last][1]
        return pick

    def _refine(self, graph: "_Graph", options, op_cost, pick) -> list[int]:
        """Local search with exact copy accounting: move one site to another option while that lowers the total
        (its own cost, the copies of the sites reading the same tensors, the read-back), in sequence order."""
        n = graph.n
        backends = [options[i][pick[i]].backend for i in range(n)] + graph.input_backends

        def local(i: int) -> float:
            site_inputs = [j for j in graph.inputs[i] if j < n]
            affected = {i, *graph.consumers[i], *(t for j in site_inputs for t in graph.consumers[j])}
            total = op_cost[i][pick[i]].seconds
            total += sum(c.cost.seconds for t in affected for c in self._copies(t, backends, graph, sites_only=True))
            for x in graph.inputs[i]:
                if x >= n:  # a step input costs one copy per backend (other than its own) that reads it
                    readers = {backends[t] for t in graph.consumers[x]}
                    total += sum(self.costs.copy(graph.out_bytes[x], backends[x], b).seconds for b in readers)
            if n - 1 in affected:
                total += self.costs.copy(graph.out_bytes[n - 1], backends[n - 1], HOST).seconds
            return total

        for _ in range(8):
            changed = False
            for i in range(n):
                if len(options[i]) < 2:
                    continue
                current, score = pick[i], local(i)
                for j in range(len(options[i])):
                    if j == current:
                        continue
                    pick[i], backends[i] = j, options[i][j].backend
                    trial = local(i)
                    if trial < score - 1e-12:
                        current, score, changed = j, trial, True
                pick[i], backends[i] = current, options[i][current].backend
            if not changed:
                break
        return pick

    def _copies(self, i: int, backends: list[str], graph: "_Graph", sites_only: bool = False) -> list[Copy]:
        """Copies site i needs: each input made on a backend whose tensors i's backend cannot read, unless an
        earlier reader on i's backend already copied it (the engine copies a tensor once per backend and step)."""
        copies = []
        dest = backends[i]
        for j in graph.inputs[i]:
            if sites_only and j >= graph.n:
                continue
            source = backends[j]
            if not self.costs.crosses(source, dest):
                continue
            if any(t < i and backends[t] == dest for t in graph.consumers[j]):
                continue
            nbytes = graph.out_bytes[j]
            copies.append(Copy(graph.step_input.get(j, j), source, dest, nbytes,
                               self.costs.copy(nbytes, source, dest)))
        return copies


@dataclass
class _Graph:
    """The dataflow of one step: sites 0..n-1, then the step's inputs."""
    n: int
    inputs: list[tuple[int, ...]]
    consumers: list[list[int]]
    out_bytes: list[int]
    input_backends: list[str]
    step_input: dict[int, int]  # node -> the input's negative id in Site.inputs


def _unique(kernels: list[Kernel]) -> list[Kernel]:
    seen: set[int] = set()
    return [k for k in kernels if not (id(k) in seen or seen.add(id(k)))]
