"""Loading a model: open the GGUF file, find its architecture plugin, check its tensors, place every call site
(tracing a decode step and a prefill batch), and make each weight resident on the backend that runs its op."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from rocmforge_core.engine.forward import Forward
from rocmforge_core.engine.weights import Weights
from rocmforge_core.gguf import open_gguf
from rocmforge_core.registry import get_registry
from rocmforge_core.scheduler import Planner
from rocmforge_core.scheduler.trace import trace_steps

PREFILL_TRACE_TOKENS = 512  # a typical prompt batch: placement of prefill sites is decided for this size

Progress = Callable[[int, int], None]  # (done, total)


class Model:
    """A model ready to run: ``forward`` computes logits; ``weights``, ``config``, ``arch`` and the ``plan``."""

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
            # Whole steps are placed first (copy minimisation needs the dataflow); tracing then follows the plan.
            self.planner.prepare(trace_steps(self.arch, self.config, self.metadata, self.weights, self.registry,
                                             PREFILL_TRACE_TOKENS))
            self.forward = Forward(self.arch, self.config, self.metadata, self.weights, self.planner, self.registry)
            self._place(progress)
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
        return self.forward.backends[self.planner.preferred]

    def attention_backend(self, layer: int):
        """The backend running layer ``layer``'s attention in decode steps, which holds its KV cache."""
        return self.forward.backends[self.plan.choices[(f"blk.{layer}.attn", "decode")].backend]

    def _place(self, progress: Progress | None) -> None:
        """Trace a decode step and a prefill batch: placing each site uploads its weights to its backend."""
        total = sum(info.nbytes for info in self.gguf.tensors.values()) or 1
        done = 0

        def uploaded(nbytes: int) -> None:
            nonlocal done
            done = min(total, done + nbytes)
            if progress:
                progress(done, total)

        self.weights.on_upload = uploaded
        try:
            self.forward.trace(1, 1, "decode")
            self.forward.trace(min(PREFILL_TRACE_TOKENS, self.config.context_length or PREFILL_TRACE_TOKENS), 1,
                               "prefill")
            for kind, name, backend in sorted(self.forward.weight_uses):
                be = self.forward.backends[backend]
                (self.weights.matrix if kind == "matrix" else self.weights.dense)(name, be)
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
