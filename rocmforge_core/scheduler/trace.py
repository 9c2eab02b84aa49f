"""Call sites of a model, found by running its forward pass on shape-only tensors that remember which site made
them (so the scheduler knows the dataflow, and which activations a placement change would copy)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from rocmforge_core.engine.forward import Dense, Forward, Matrix, Meta
from rocmforge_core.ops import ArgInfo, Signature
from rocmforge_core.ops.sample import DEFAULTS as SAMPLE_DEFAULTS
from rocmforge_core.scheduler.plan import Plan
from rocmforge_core.scheduler.sites import Site, phase_of

PREFILL_TOKENS = 64  # the prefill step a trace describes (shape buckets make the plan hold for other lengths)
_ITEMSIZE = {"f32": 4, "f16": 2, "i32": 4}


@dataclass(frozen=True)
class Traced(Meta):
    src: int | None = None  # index of the site that made this tensor, or a step input's id (STEP_INPUTS)

    def reshape(self, *shape: int) -> "Traced":
        return Traced(tuple(shape), self.dtype_name, self.src)


@dataclass
class Model:
    """What the scheduler needs of a model file: its name, config and the sites of a prefill and a decode step."""
    path: Path
    arch: str
    config: object
    steps: dict[str, list[Site]]


class _Recorder:
    """Stands in for the planner while tracing: notes each call's signature."""

    def __init__(self):
        self.plan = Plan(order=())
        self.last: Signature | None = None

    def choose(self, site: str, phase: str, sig: Signature, resident=None):
        self.last = sig
        return SimpleNamespace(backend="", kernel=None)


class _Tracer(Forward):
    def __init__(self, arch, config, metadata, weights, registry):
        self.recorder = _Recorder()
        super().__init__(arch, config, metadata, weights, self.recorder, registry)
        self.sites: list[Site] = []

    def op(self, op: str, site: str, *args, **params):
        inputs = [a.src for a in args if isinstance(a, Traced) and a.src is not None]
        if op == "attention":
            inputs.append(-5)  # the KV cache's block tables, kept with the step inputs
        inputs = tuple(dict.fromkeys(inputs))
        out = super().op(op, site, *args, **params)
        weights = [a for a in args if isinstance(a, (Matrix, Dense))]
        self.sites.append(Site(site, op, self.recorder.last, self.phase, inputs,
                               weights[0].name if weights else "", sum(map(self._bytes, weights)),
                               int(np.prod(out.shape)) * _ITEMSIZE[out.dtype_name]))
        return Traced(out.shape, out.dtype_name, len(self.sites) - 1)

    def _bytes(self, a) -> int:
        w = self.weights.host(a.name)
        return int(np.asarray(w.data).nbytes) if isinstance(a, Matrix) else int(np.prod(w.shape)) * 4

    def step(self, m: int, phase: str) -> list[Site]:
        self.sites = []
        self.batch = SimpleNamespace(tokens=Traced((m,), "i32", -1), positions=Traced((m,), "i32", -2),
                                     seq_ids=Traced((m,), "i32", -3), out_rows=Traced((1,), "i32", -4), m=m)
        self.phase, self.tracing = phase, True
        try:
            logits = self.arch.forward(self)
        finally:
            self.tracing = False
        # The engine samples each step's logits: the sampler is the step's last site.
        vocab = logits.shape[-1]
        sample = Signature("sample", (ArgInfo((vocab,), "f32"), ArgInfo((64,), "i32")),
                           tuple(sorted(SAMPLE_DEFAULTS.items())))
        self.sites.append(Site("sample", "sample", sample, phase, (logits.src, -6), "", 0, 4))
        return self.sites


def trace_steps(arch, config, metadata, weights, registry, prefill_tokens: int = PREFILL_TOKENS) -> dict[str, list[Site]]:
    """The sites of a decode step and of a prefill step of ``prefill_tokens`` tokens."""
    tracer = _Tracer(arch, config, metadata, weights, registry)
    prefill = max(2, min(prefill_tokens, config.context_length or prefill_tokens))
    return {phase_of(m): tracer.step(m, phase_of(m)) for m in (1, prefill)}


def trace_model(path: str | Path, registry, prefill_tokens: int = PREFILL_TOKENS) -> Model:
    from rocmforge_core.engine.weights import Weights
    from rocmforge_core.gguf import open_gguf
    gguf = open_gguf(path)
    arch = registry.architecture(gguf.architecture)
    config = gguf.config
    weights = Weights(gguf, registry, arch.name)
    weights.require(arch.required_tensors(config))
    return Model(Path(path), arch.name, config, trace_steps(arch, config, gguf.metadata, weights, registry,
                                                             prefill_tokens))
