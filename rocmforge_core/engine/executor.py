"""The executor: a placed program bound to tensors, and run step after step with transparent fallback.

``bind`` turns a ``Program`` into a list of calls: the planner's kernel for each site's concrete signature, the
site's weights resident on that kernel's backend, the step's input tensors and the KV cache, and a copy wherever
an activation (or input) made on one backend is read on another of other memory, made once per step. ``run``
replays that list; nothing is planned or looked up on the way. A bound step is made again when the plan changes
(``Plan.version``) or the cache does.

Guarding the run (the engine's, not the scheduler's: the planner only answers what runs next):
- A kernel that raises is failed over at once (``Planner.fail``) and its call re-runs on the next candidate.
- A step whose logits are not all finite runs again with every output checked against the op's numpy reference
  on the same inputs: the first kernel whose output is non-finite where the reference's is not, or far from it,
  is failed over the same way. Re-running is safe: a step only rewrites the cache slots of its own tokens. If
  the logits are still not finite, ``NonFiniteError`` names the first site whose output went non-finite. A
  sampler that raises on non-finite logits is not failed over (it is not at fault, and replacing every sampler
  would leave none for the steps after): the step goes to the checked run instead.
- A kernel with state (the KV cache) replaced by one of another backend takes the state along.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from rocmforge_core import ops
from rocmforge_core.errors import BackendError, RocmforgeError
from rocmforge_core.formats import dequantize_weight
from rocmforge_core.program import Cache, Dense, Matrix, Meta, Program, Site

DIAGNOSTIC_NMSE = 1e-2  # an op this far from its reference on its own inputs computed something else


class NonFiniteError(RocmforgeError):
    """A step's logits stayed non-finite after every failing kernel was replaced."""


class SamplerRefusedLogits(Exception):
    """A sampler raised on non-finite logits: the step must be re-run checked (``run_checked``)."""


def resident_signature(weights, site: Site, backend) -> ops.Signature:
    """The site's call as ``backend`` would run it: its weights in the layout their upload there gives them
    (uploading them)."""
    if not any(isinstance(a, Matrix) for a in site.args):
        return site.sig
    infos = tuple(ops.arg_info(weights.matrix(a.name, backend)) if isinstance(a, Matrix) else info
                  for a, info in zip(site.args, site.sig.args))
    return ops.Signature(site.sig.op, infos, site.sig.params)


@dataclass
class Call:
    """One bound site (``index`` into the program), or a copy (``site`` None) of slot/constant ``args[0]`` from
    ``source`` onto ``backend``."""
    index: int
    site: Site | None
    fn: Callable
    backend: Any
    args: list  # per argument: (slot, None), (slot, shape to view it as), or (None, constant)
    params: dict = field(default_factory=dict)
    source: Any = None
    choice: Any = None


@dataclass
class Bound:
    program: Program
    calls: list[Call]
    n_slots: int
    slot_of: dict[int, int]  # site index -> slot of its result
    cache: Any

    @property
    def logits_slot(self) -> int:
        return self.slot_of[self.program.logits]

    @property
    def tokens_slot(self) -> int:
        return self.slot_of[self.program.tokens]

    @property
    def logprobs_slot(self) -> int | None:
        return self.slot_of[self.program.logprobs] if self.program.logprobs >= 0 else None


class Executor:
    def __init__(self, planner, backends: dict, weights):
        self.planner, self.backends, self.weights = planner, backends, weights
        self.copies = 0  # activation copies between backends, all steps

    # -- binding --------------------------------------------------------------------------------------------
    def bind(self, program: Program, inputs: dict, cache) -> Bound:
        """``inputs``: step input id -> tensor (on the preferred backend); ``cache`` the KV cache."""
        calls: list[Call] = []
        slot_of: dict[int, int] = {}
        home: dict[int, str] = {}  # site index -> backend its result lives on
        copied: dict[tuple, int] = {}  # (source key, backend) -> slot of the copy
        n_slots = 0
        for i, site in enumerate(program.sites):
            choice = self.planner.choose(site.name, site.phase, site.sig, lambda name, s=site: self._resident(s, name))
            backend = self.backends[choice.backend]
            args = []
            for a in site.args:
                if isinstance(a, Meta):
                    if a.src >= 0:
                        source, key, value = self.backends[home[a.src]], ("site", a.src), (slot_of[a.src], None)
                    else:
                        tensor = inputs[a.src]
                        source, key, value = self._owner(tensor), ("input", a.src), (None, tensor)
                    if self._crosses(source, backend):
                        if (key, backend.name) not in copied:
                            copied[(key, backend.name)] = n_slots
                            calls.append(Call(-1, None, None, backend, [value], source=source))
                            n_slots += 1
                        value = (copied[(key, backend.name)], None)
                    slot, const = value
                    shape = tuple(a.shape)
                    if slot is None:
                        args.append((None, const if tuple(const.shape) == shape else const.reshape(*shape)))
                    else:
                        made = program.sites[a.src].out.shape if key[0] == "site" else None
                        args.append((slot, None if made == shape else shape))
                else:
                    args.append((None, self._constant(a, backend, cache)))
            calls.append(Call(i, site, choice.kernel.fn, backend, args, site.params, choice=choice))
            slot_of[i] = n_slots  # the result of call j lands in slot j
            home[i] = choice.backend
            n_slots += 1
        return Bound(program, calls, n_slots, slot_of, cache)

    def _resident(self, site: Site, backend_name: str):
        return resident_signature(self.weights, site, self.backends[backend_name])

    def _constant(self, a, backend, cache):
        if isinstance(a, Matrix):
            return self.weights.matrix(a.name, backend)
        if isinstance(a, Dense):
            return self.weights.dense(a.name, backend)
        if isinstance(a, Cache):
            tensor = cache.tensor(a)
            if not backend.owns(tensor):  # state lives where its op runs: a fallback moved the op
                cache.move(a.layer, backend, self._owner(tensor))
                tensor = cache.tensor(a)
            return tensor
        raise TypeError(f"cannot bind a {type(a).__name__} argument")

    def _owner(self, tensor):
        for backend in self.backends.values():
            if backend.owns(tensor):
                return backend
        raise BackendError(f"no backend owns a tensor of type {type(tensor).__name__}")

    def _crosses(self, source, dest) -> bool:
        return source is not dest and not (source.is_host and dest.is_host)

    # -- running --------------------------------------------------------------------------------------------
    def run(self, bound: Bound, upto: int | None = None) -> list:
        """Run the bound step (its first ``upto`` calls); the values of every slot."""
        values: list = [None] * bound.n_slots
        calls = bound.calls if upto is None else bound.calls[:upto]
        for j, call in enumerate(calls):
            args = [x if slot is None else (values[slot] if x is None else values[slot].reshape(*x))
                    for slot, x in call.args]
            if call.site is None:
                values[j] = call.backend.copy_from(args[0], call.source)
                self.copies += 1
                continue
            try:
                values[j] = call.fn(*args, **call.params)
            except Exception as exc:
                self._blame_the_logits(call, args)
                values[j] = self._fail_over(bound, call, args, f"raised {type(exc).__name__}: {exc}")
                # Later calls may read a result from another backend now: finish the step the careful way.
                return self._finish(bound, values, j + 1)
        return values

    def run_from(self, bound: Bound, start: int, values: list) -> list:
        """Continue a run whose first ``start`` calls are done (the captured part of a step)."""
        return self._finish(bound, values, start)

    def _finish(self, bound: Bound, values: list, start: int, check: bool = False) -> list:
        """Run calls from ``start`` on, moving every argument to its call's backend (after a fallback a result may
        live elsewhere than the plan said); with ``check``, each output is held to the op's reference."""
        for j in range(start, len(bound.calls)):
            call = bound.calls[j]
            args = [x if slot is None else self._on(call.backend, values[slot] if x is None else values[slot].reshape(*x))
                    for slot, x in call.args]
            if call.site is None:
                values[j] = args[0]
                continue
            values[j] = self._call(bound, call, args, check)
        return values

    def _call(self, bound: Bound, call: Call, args: list, check: bool):
        while True:
            try:
                out = call.fn(*args, **call.params)
            except Exception as exc:
                self._blame_the_logits(call, args)
                return self._fail_over(bound, call, args, f"raised {type(exc).__name__}: {exc}")
            problem = self._problem(call, args, out) if check else ""
            if not problem:
                return out
            return self._fail_over(bound, call, args, problem)

    def _blame_the_logits(self, call: Call, args: list) -> None:
        if call.site.op == "sample" and not self._finite(args[0]):
            raise SamplerRefusedLogits(call.site.name)

    def _fail_over(self, bound: Bound, call: Call, args: list, problem: str):
        """``call``'s kernel failed: ask the planner for the next candidate and run the call on it (raising
        KernelFailure under --strict, UnsupportedError when no candidate is left)."""
        site = call.site
        host = [None if isinstance(a, (Matrix, Dense, Cache)) else self.to_host(v) for a, v in zip(site.args, args)]
        while True:
            choice = self.planner.fail(site.name, site.phase, site.sig, call.choice.kernel, problem,
                                       lambda name: self._resident(site, name))
            backend = self.backends[choice.backend]
            moved = [self._bound_arg(a, h, backend, bound.cache) for a, h in zip(site.args, host)]
            call = Call(call.index, site, choice.kernel.fn, backend, call.args, call.params, choice=choice)
            try:
                return call.fn(*moved, **call.params)
            except Exception as exc:
                problem = f"raised {type(exc).__name__}: {exc}"

    def _bound_arg(self, a, host_value, backend, cache):
        if isinstance(a, (Matrix, Dense, Cache)):
            return self._constant(a, backend, cache)
        return host_value if backend.is_host else backend.from_host(host_value)

    def _on(self, backend, tensor):
        if backend.owns(tensor):
            return tensor
        self.copies += 1
        return backend.copy_from(tensor, self._owner(tensor))

    def to_host(self, tensor):
        """A tensor of any backend of the model as a numpy array (a host backend's as it is)."""
        if isinstance(tensor, np.ndarray):
            return tensor
        owner = self._owner(tensor)
        return tensor if owner.is_host else owner.to_host(tensor)

    # -- checking -------------------------------------------------------------------------------------------
    def run_checked(self, bound: Bound) -> list:
        """The step again, every output held to its op's reference on the same inputs (see the module doc)."""
        values = [None] * bound.n_slots
        with contextlib.suppress(SamplerRefusedLogits):  # the values up to the logits are in
            self._finish(bound, values, 0, check=True)
        logits = values[bound.logits_slot]
        if not self._finite(logits):
            raise NonFiniteError(self._first_non_finite(bound, values))
        return values

    def _problem(self, call: Call, args: list, out) -> str:
        if call.site.op == "sample":  # a draw from bad logits is not the sampler's fault
            return ""
        actual = self.to_host(out)
        expected = ops.reference(call.site.op)(*(self._reference_arg(a, h) for a, h in zip(call.site.args, args)),
                                               **call.params)
        if not np.isfinite(actual).all():
            return "returned non-finite values where the reference does not" if np.isfinite(expected).all() else ""
        error = ops.nmse(actual, expected)
        if error > DIAGNOSTIC_NMSE:
            return f"returned values far from the reference (normalized MSE {error:.3g})"
        return ""

    def _reference_arg(self, a, value):
        if isinstance(a, Matrix):
            return self.weights.host(a.name)
        if isinstance(a, Dense):
            return dequantize_weight(self.weights.host(a.name))
        host = self.to_host(value)
        return host.copy() if isinstance(host, np.ndarray) else host  # the reference writes the cache: a copy

    def _finite(self, tensor) -> bool:
        return self._owner(tensor).all_finite(tensor)

    def _first_non_finite(self, bound: Bound, values: list) -> str:
        for call, value in zip(bound.calls, values):
            if call.site is not None and value is not None and call.site.op != "sample" and not self._finite(value):
                return (f"the step's logits are not finite: {call.site.name} ({call.site.phase}) was the first site "
                        f"whose output went non-finite, computed by {call.choice.kernel.name} on "
                        f"{call.choice.backend}, and the numpy reference gives the same on its inputs: the model's "
                        "weights or inputs produce it")
        return "the step's logits are not finite, though no site's output was"
