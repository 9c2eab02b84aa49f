"""Loading a model: open the GGUF file, find its architecture plugin, check its tensors, trace a decode step and a
prefill batch into programs, have the planner place them, and make each weight resident on the backend that runs
its op (before any token is computed)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rocmforge_core.engine.executor import resident_signature
from rocmforge_core.engine.forward import Forward
from rocmforge_core.engine.weights import Weights
from rocmforge_core.gguf import open_gguf
from rocmforge_core.program import Cache, Dense, Site
from rocmforge_core.registry import get_registry
from rocmforge_core.scheduler import Planner

PREFILL_TRACE_TOKENS = 512  # a typical prompt batch: placement of prefill sites is decided for this size
PLAN_CANDIDATES = 64  # the sampler's candidate bound placement assumes (the default top-k of 40, rounded up)

Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class TracedModel:
    """What planning needs of a model file without loading its weights anywhere: its name, config and the sites of
    a prefill and a decode step."""
    path: Path
    arch: str
    config: object
    steps: dict[str, list[Site]]


def trace_steps(forward: Forward, config, prefill_tokens: int = PREFILL_TRACE_TOKENS) -> dict[str, list[Site]]:
    """The sites of a decode step and of a prefill step of ``prefill_tokens`` tokens (decode first: it decides
    where each layer's KV cache lives)."""
    prefill = max(2, min(prefill_tokens, config.context_length or prefill_tokens))
    return {phase: forward.trace(phase, m, 1, candidates=PLAN_CANDIDATES).sites
            for phase, m in (("decode", 1), ("prefill", prefill))}


def trace_file(path: str | Path, registry=None, prefill_tokens: int = PREFILL_TRACE_TOKENS) -> TracedModel:
    registry = registry or get_registry()
    gguf = open_gguf(path)
    try:
        gguf.validate(registry)
        arch = registry.architecture(gguf.architecture)
        weights = Weights(gguf, registry, arch.name)
        weights.require(arch.required_tensors(gguf.config))
        forward = Forward(arch, gguf.config, gguf.metadata, weights)
        return TracedModel(Path(path), arch.name, gguf.config, trace_steps(forward, gguf.config, prefill_tokens))
    finally:
        gguf.close()


class Model:
    """A model ready to run: ``forward`` traces its steps; ``weights``, ``config``, ``arch``, ``backends`` and the
    ``plan``."""

    def __init__(self, path: str | Path, *, backend: str | None = "reference", profile=None, registry=None,
                 progress: Progress | None = None, strict: bool = False, tuning: bool = True):
        """``backend`` None: the profile's default (else auto). ``strict``: a kernel failure is an error instead
        of a fallback. ``tuning``: use this machine's measured costs when `rocmforge tune` made them."""
        start = time.perf_counter()
        self.registry = registry or get_registry()
        self.path = Path(path)
        self.gguf = open_gguf(self.path)
        try:
            self.gguf.validate(self.registry)
            self.arch = self.registry.architecture(self.gguf.architecture)
            self.config = self.gguf.config
            self.metadata = self.gguf.metadata
            self.weights = Weights(self.gguf, self.registry, self.arch.name)
            self.weights.require(self.arch.required_tensors(self.config))
            self.planner = Planner(self.registry, backend, profile, strict=strict, use_tuning=tuning)
            self.forward = Forward(self.arch, self.config, self.metadata, self.weights)
            self.backends = {name: self.registry.backend(name) for name in self.planner.plan.order}
            self.planner.prepare(trace_steps(self.forward, self.config))
            self._upload(progress)
        except BaseException:
            self.gguf.close()
            raise
        self.load_seconds = time.perf_counter() - start
        self._tokenizer = None

    @property
    def plan(self):
        return self.planner.plan

    @property
    def backend(self):
        """The preferred backend: per-step inputs live there."""
        return self.backends[self.planner.preferred]

    def attention_backend(self, layer: int):
        """The backend that holds layer ``layer``'s KV cache: where the decode step's op with that state runs."""
        for site_plan in self.planner.steps["decode"].sites:
            if any(isinstance(a, Cache) and a.layer == layer for a in site_plan.site.args):
                return self.backends[site_plan.backend]
        return self.backend

    def _upload(self, progress: Progress | None) -> None:
        """Decide every traced site's kernel (the planner asks each candidate about the call with the weights in its
        backend's layout, uploading them there) and put its small weights there too, reporting progress in file
        bytes."""
        total = sum(info.nbytes for info in self.gguf.tensors.values()) or 1
        done = 0

        def uploaded(nbytes: int) -> None:
            nonlocal done
            done = min(total, done + nbytes)
            if progress:
                progress(done, total)

        self.weights.on_upload = uploaded
        try:
            for phase, step in self.planner.steps.items():
                for planned in step.sites:
                    site = planned.site
                    choice = self.planner.choose(site.name, phase, site.sig, lambda name, s=site: resident_signature(
                        self.weights, s, self.backends[name]))
                    for a in site.args:
                        if isinstance(a, Dense):
                            self.weights.dense(a.name, self.backends[choice.backend])
        finally:
            self.weights.on_upload = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from rocmforge_core.tokenizer import Tokenizer
            self._tokenizer = Tokenizer.from_metadata(self.metadata)
        return self._tokenizer

    def close(self) -> None:
        self.gguf.close()
