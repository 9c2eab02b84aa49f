"""Forward: the ops model code calls, each placed on a kernel by the planner and run on that kernel's backend.

Model code (rocmforge_core/models/) sees only this object: ``f.matmul(x, "blk.3.attn_q")``,
``f.rmsnorm(x, "blk.3.attn_norm", eps=...)``, ``f.attention("blk.3.attn", q, k, v, layer=3, scale=...)``.
Weights are named by their GGUF tensor names and made resident on the backend that runs the op (matmul and
embedding tables through ``Backend.upload_weight``; norm weights and biases as f32 tensors). An activation
produced on one backend and consumed on another is copied with ``copy_from``, once per step.

The first step of each shape (phase, tokens, logits rows) records its placed calls; later ones replay the record
(same kernels, same resident weights) without building signatures or asking the planner, so the Python between
kernels stays a few microseconds per op. The records of the ``max_programs`` most recently used shapes are kept.
A change of ``Plan.version`` (a choice dropped or replaced) or of the KV cache discards them.

``trace`` runs the model code on shape-only tensors: every op is placed but nothing computes, so the engine can
decide placement, upload weights and allocate the KV cache before the first real step.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from rocmforge_core.errors import BackendError
from rocmforge_core.formats import Weight
from rocmforge_core.ops import ArgInfo, Signature, arg_info
from rocmforge_core.scheduler import Planner
from rocmforge_core.scheduler.guard import run_op


MAX_PROGRAMS = 32  # recorded step shapes kept (a server's prefill sizes are powers of two: a handful)


@dataclass(frozen=True)
class Meta:
    """A shape-only tensor used while tracing."""
    shape: tuple[int, ...]
    dtype_name: str = "f32"

    def reshape(self, *shape: int) -> "Meta":
        return Meta(tuple(shape), self.dtype_name)


@dataclass(frozen=True)
class Matrix:
    """A weight passed in its stored format (matmul weights, embedding tables)."""
    name: str


@dataclass(frozen=True)
class Dense:
    """A small weight passed as an f32 tensor (norm weights, biases, rope frequency factors)."""
    name: str


OUT_SHAPES = {
    "embedding": lambda a: (a[1].shape[0], a[0].shape[-1]),
    "matmul": lambda a: (a[0].shape[0], a[1].shape[0]),
    "attention": lambda a: (a[0].shape[0], a[0].shape[1], a[2].shape[2]),
    "rmsnorm": lambda a: a[0].shape,
    "rope": lambda a: a[0].shape,
    "add": lambda a: a[0].shape,
    "scale": lambda a: a[0].shape,
    "activation": lambda a: a[0].shape,
}


@dataclass
class Batch:
    """Per-step inputs, allocated once per shape on the preferred backend and refilled with ``write``."""
    tokens: Any     # i32[m]
    positions: Any  # i32[m]
    seq_ids: Any    # i32[m]: rows of the block table
    out_rows: Any   # i32[n_out]: which of the m rows produce logits
    written: dict = field(default_factory=dict)  # field name -> the values it holds

    @property
    def m(self) -> int:
        return self.tokens.shape[0]

    def fill(self, backend, **values) -> None:
        """Write the step's inputs, skipping those that hold these values already (a decoding sequence keeps its
        slot and output row: two of the four writes)."""
        for name, v in values.items():
            array = np.asarray(v, dtype=np.int32)
            last = self.written.get(name)
            if last is None or not np.array_equal(last, array):
                backend.write(getattr(self, name), array)
                self.written[name] = array


@dataclass(frozen=True)
class Call:
    """One placed op call of a step, replayed on later steps of the same shape without re-planning."""
    site: str
    fn: Callable
    backend: Any
    weights: tuple  # per argument: the resident weight, or None for an activation


class Forward:
    def __init__(self, arch, config, metadata, weights, planner: Planner, registry):
        # metadata: the GGUF file's, for architectures that read keys the ModelConfig does not carry
        self.arch, self.config, self.metadata, self.weights, self.planner = arch, config, metadata, weights, planner
        self.backends = {name: registry.backend(name) for name in planner.plan.order}
        self.batch: Batch | None = None
        self.cache = None  # KVCache
        self.phase = "prefill"
        self.tracing = False
        self.copies = 0  # activation copies between backends, all steps
        self.weight_uses: set[tuple[str, str, str]] = set()  # (matrix|dense, tensor, backend) seen while tracing
        self._copied: dict[tuple[int, str], tuple[Any, Any]] = {}
        self._weight_infos: dict[Matrix | Dense, ArgInfo] = {}
        # Steps of one shape repeat the same calls: the first step of each shape records them (kernel, backend,
        # resident weights) and later steps replay that record instead of building signatures and planning.
        self._programs: OrderedDict[tuple[str, int, int], list[Call]] = OrderedDict()  # least recently used first
        self._programs_for = (planner.plan.version, None)  # (plan version, KV cache) the records were made with
        self.max_programs = MAX_PROGRAMS
        self._recording: list[Call] | None = None
        self._replay: list[Call] | None = None
        self._pc = 0

    # -- running the model ------------------------------------------------------------------------------------
    def run(self, batch: Batch, cache, phase: str):
        """Logits f32[n_out, vocab] for the batch's ``out_rows``."""
        self.batch, self.cache, self.phase, self.tracing = batch, cache, phase, False
        self._copied.clear()
        programs, key = self._programs, (phase, batch.m, batch.out_rows.shape[0])
        made_for = (self.planner.plan.version, cache)
        if self._programs_for[0] != made_for[0] or self._programs_for[1] is not cache:
            programs.clear()  # the records may hold a replaced kernel, or signatures of another cache's layout
            self._programs_for = made_for
        if not self.planner.checking:  # a checked re-run goes through execute() op by op
            self._replay, self._pc = programs.get(key), 0
            if self._replay is None:
                self._recording = []
            else:
                programs.move_to_end(key)
        try:
            out = self.arch.forward(self)
            if self._recording is not None and self.planner.plan.version == made_for[0]:
                programs[key] = self._recording
                if len(programs) > self.max_programs:
                    programs.popitem(last=False)
            return out
        finally:
            self._recording = self._replay = None

    def trace(self, m: int, n_out: int, phase: str) -> None:
        """Place every call site of one step of m tokens, computing nothing."""
        i32 = lambda n: Meta((n,), "i32")  # noqa: E731
        self.batch = Batch(i32(m), i32(m), i32(m), i32(n_out))
        self.phase, self.tracing = phase, True
        try:
            self.arch.forward(self)
        finally:
            self.tracing = False

    @property
    def m(self) -> int:
        return self.batch.m

    @property
    def tokens(self):
        return self.batch.tokens

    @property
    def positions(self):
        return self.batch.positions

    def has(self, name: str) -> bool:
        return self.weights.has(name)

    # -- ops (site names follow GGUF tensor names) ------------------------------------------------------------
    def embedding(self, name: str, ids):
        """Rows ``ids`` of the tensor ``name + ".weight"``; the call site is ``name``."""
        return self.op("embedding", name, Matrix(f"{name}.weight"), ids)

    def matmul(self, x, name: str, site: str | None = None):
        """x @ W.T with W the tensor ``name + ".weight"``; the call site is ``name`` unless given."""
        return self.op("matmul", site or name, x, Matrix(f"{name}.weight"))

    def rmsnorm(self, x, name: str, *, eps: float):
        return self.op("rmsnorm", name, x, Dense(f"{name}.weight"), eps=eps)

    def bias(self, x, name: str):
        return self.op("add", f"{name}.bias", x, Dense(f"{name}.bias"))

    def add(self, site: str, a, b):
        return self.op("add", site, a, b)

    def scale(self, site: str, x, s: float):
        return self.op("scale", site, x, s=float(s))

    def activation(self, site: str, gate, up, kind: str):
        return self.op("activation", site, gate, up, kind=kind)

    def rope(self, site: str, x, *, base: float, mode: str, n_rot: int = 0, freq_scale: float = 1.0,
             freq_factors: str | None = None):
        args = (x, self.positions) + ((Dense(freq_factors),) if freq_factors else ())
        return self.op("rope", site, *args, base=float(base), mode=mode, n_rot=int(n_rot),
                       freq_scale=float(freq_scale))

    def attention(self, site: str, q, k, v, *, layer: int, scale: float, window: int = 0, softcap: float = 0.0):
        if self.tracing:
            kc, vc, tables = Meta((1, 1) + k.shape[1:]), Meta((1, 1) + v.shape[1:]), Meta((1, 1), "i32")
        else:
            kc, vc, tables = self.cache.k[layer], self.cache.v[layer], self.cache.tables
        b = self.batch
        return self.op("attention", site, q, k, v, kc, vc, tables, b.seq_ids, b.positions,
                       scale=float(scale), window=int(window), softcap=float(softcap))

    def sample(self, logits, history, *, seed: int, step: int, **params):
        """One token id (i32[1]) from logits f32[V]; seed and step change every call, so they do not take part in
        placement."""
        self._copied.clear()
        return self.op("sample", "sample", logits, history, _per_call=dict(seed=seed, step=step), **params)

    def output_row(self, logits, row):
        """One row (a tensor i32[1] holding its index) of a batch's logits, for sampling."""
        return self.op("embedding", "sample_rows", logits, row)

    def output_rows(self, x):
        """The rows of x that produce logits (the last prompt position, or all of them)."""
        return self.op("embedding", "output_rows", x, self.batch.out_rows)

    def to_host(self, tensor):
        """A tensor of any backend used here, as a numpy array."""
        return self._owner(tensor).to_host(tensor)

    def all_finite(self, tensor) -> bool:
        return self._owner(tensor).all_finite(tensor)

    def _owner(self, tensor):
        for backend in self.backends.values():
            if backend.owns(tensor):
                return backend
        raise BackendError(f"no backend owns a tensor of type {type(tensor).__name__}")

    # -- placement and execution ------------------------------------------------------------------------------
    def op(self, op: str, site: str, *args, _per_call: dict | None = None, **params):
        if self._replay is not None:
            call = self._replay[self._pc]
            if call.site == site:
                self._pc += 1
                be = call.backend
                try:
                    return call.fn(*(self._on(be, a) if w is None else w for w, a in zip(call.weights, args)),
                                   **params)
                except Exception:  # run this call the full way below, where failures are dealt with
                    pass
            self._replay = None  # from here on, place calls one by one
        sig = Signature(op, tuple(self._info(a) for a in args), tuple(sorted(params.items())) if params else ())
        if _per_call:
            params.update(_per_call)
        choice = self.planner.choose(site, self.phase, sig, lambda b: self._resident(sig, args, b))
        if self.tracing:
            self.weight_uses.update((type(a).__name__.lower(), a.name, choice.backend) for a in args
                                    if isinstance(a, (Matrix, Dense)))
            return Meta(tuple(OUT_SHAPES[op](sig.args)))
        backend = self.backends[choice.backend]
        if self._recording is not None:
            self._recording.append(Call(site, choice.kernel.fn, backend, tuple(
                self._on(backend, a) if isinstance(a, (Matrix, Dense)) else None for a in args)))
        return self.execute(op, site, sig, choice, args, params)

    def execute(self, op: str, site: str, sig: Signature, choice, args: tuple, params: dict):
        """Run the chosen kernel on ``args`` moved to its backend: the one place a kernel runs after placement
        (the hybrid scheduler's run-time fallback hooks in here)."""
        return run_op(self, self.planner, op, site, sig, choice, args, params,
                      lambda b: self._resident(sig, args, b))

    def _info(self, a) -> ArgInfo:
        if isinstance(a, (Matrix, Dense)):  # a weight's description never changes: made once
            info = self._weight_infos.get(a)
            if info is None:
                w = self.weights.host(a.name)
                info = self._weight_infos[a] = self._info(w) if isinstance(a, Matrix) else ArgInfo(w.shape, "f32")
            return info
        if isinstance(a, Weight):
            return ArgInfo(a.shape, a.fmt, a.layout)
        return arg_info(a)

    def _resident(self, sig: Signature, args, backend: str) -> Signature:
        """The call as ``backend`` would run it: weights in the layout its upload gives them (uploading them)."""
        if not any(isinstance(a, Matrix) for a in args):
            return sig
        infos = tuple(self._info(self.weights.matrix(a.name, self.backends[backend])) if isinstance(a, Matrix)
                      else info for a, info in zip(args, sig.args))
        return Signature(sig.op, infos, sig.params)

    def _on(self, backend, a):
        if isinstance(a, Matrix):
            return self.weights.matrix(a.name, backend)
        if isinstance(a, Dense):
            return self.weights.dense(a.name, backend)
        if backend.owns(a):
            return a
        key = (id(a), backend.name)
        if key not in self._copied:  # the entry keeps ``a`` alive, so its id is not reused within the step
            source = next((b for b in self.backends.values() if b.owns(a)), None)
            if source is None:
                raise BackendError(f"no backend owns a tensor of type {type(a).__name__}")
            self._copied[key] = (a, backend.copy_from(a, source))
            self.copies += 1
        return self._copied[key][1]
