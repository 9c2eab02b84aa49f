"""Forward: the ops model code calls, recorded as a ``Program`` (rocmforge_core/program.py).

Model code (rocmforge_core/models/) sees only this object: ``f.matmul(x, "blk.3.attn_q")``,
``f.rmsnorm(x, "blk.3.attn_norm", eps=...)``, ``f.attention("blk.3.attn", q, k, v, layer=3, scale=...)``. Weights
are named by their GGUF tensor names. ``trace`` runs the model code once per step shape on shape-only tensors:
every call becomes a ``Site`` with its signature (shapes, dtypes, GGUF types, params) and its dataflow, and the
step ends by sampling every row of logits. The scheduler places a program; the executor (executor.py) runs it.
"""

from __future__ import annotations

import numpy as np

from rocmforge_core import ops
from rocmforge_core.ops import ArgInfo, Signature
from rocmforge_core.ops.logprobs import TOP
from rocmforge_core.ops.sample import CONTROLS, PARAMS, mask_words
from rocmforge_core.program import (BIAS_IDS, BIAS_VALUES, BLOCK_TABLES, HISTORY, OUT_ROWS, POSITIONS,
                                    SAMPLE_CONTROLS, SAMPLE_PARAMS, SEQ_IDS, TOKEN_MASK, TOKENS, Cache, Dense, Matrix,
                                    Meta, Program, Site)


class Forward:
    def __init__(self, arch, config, metadata, weights):
        # metadata: the GGUF file's, for architectures that read keys the ModelConfig does not carry
        self.arch, self.config, self.metadata, self.weights = arch, config, metadata, weights
        self._infos: dict[Matrix | Dense, ArgInfo] = {}
        self._program: Program | None = None
        self._caches = None

    def trace(self, phase: str, m: int, n_out: int, *, candidates: int = 1, history: int = 1, bias: int = 1,
              logprobs: bool = False, caches=None, output: str = "logits") -> Program:
        """The program of a step of ``m`` tokens with ``n_out`` rows of logits, sampled with a ``candidates`` bound,
        ``history`` penalty tokens and ``bias`` logit-bias entries per row, and with ``logprobs`` the rows'
        log-probabilities after the draw; with ``output`` "hidden", of ``n_out`` rows of final hidden states (after
        the output norm), with neither the output matrix nor sampling (embeddings). ``caches``: (block tables,
        [(k, v) per layer]) as ArgInfo, the KV cache the step will run on; without it, one-block placeholders
        (placement does not depend on its size)."""
        self._program, self._caches = Program(phase, m, n_out, output=output), caches
        self.tokens = Meta((m,), "i32", TOKENS)
        self.positions = Meta((m,), "i32", POSITIONS)
        self._seq_ids, self._out_rows = Meta((m,), "i32", SEQ_IDS), Meta((n_out,), "i32", OUT_ROWS)
        try:
            program = self._program
            if output == "hidden":
                program.logits = self.arch.hidden(self).src
                return program
            logits = self.arch.forward(self)
            program.logits = logits.src
            tokens = self.op("sample", "sample", logits, Meta((n_out, history), "i32", HISTORY),
                             Meta((n_out, len(PARAMS)), "f64", SAMPLE_PARAMS),
                             Meta((n_out, len(CONTROLS)), "i64", SAMPLE_CONTROLS),
                             Meta((n_out, mask_words(logits.shape[-1])), "i32", TOKEN_MASK),
                             Meta((n_out, bias), "i64", BIAS_IDS), Meta((n_out, bias), "f32", BIAS_VALUES),
                             candidates=candidates)
            program.tokens = tokens.src
            if logprobs:
                program.logprobs = self.op("logprobs", "logprobs", logits, tokens,
                                           top=min(TOP, logits.shape[-1])).src
            return program
        finally:
            self._program = self._caches = None

    @property
    def m(self) -> int:
        return self._program.m

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
        tables = Meta(self._caches[0].shape if self._caches else (1, 1), "i32", BLOCK_TABLES)
        return self.op("attention", site, q, k, v, Cache("k", layer), Cache("v", layer), tables, self._seq_ids,
                       self.positions, scale=float(scale), window=int(window), softcap=float(softcap))

    def output_rows(self, x):
        """The rows of x that produce logits (the last prompt position, or all of them)."""
        return self.op("embedding", "output_rows", x, self._out_rows)

    # -- recording ----------------------------------------------------------------------------------------------
    def op(self, op: str, site: str, *args, **params) -> Meta:
        spec = ops.spec(op)
        infos = tuple(self._info(a, args) for a in args)
        sig = Signature(op, infos, tuple(sorted(params.items())))
        shape, dtype = spec.out_shape(infos, params)
        program = self._program
        out = Meta(tuple(shape), dtype, len(program.sites))
        weights = [a for a in args if isinstance(a, (Matrix, Dense))]
        inputs = tuple(dict.fromkeys(a.src for a in args if isinstance(a, Meta) and a.src is not None))
        program.sites.append(Site(site, op, sig, program.phase, inputs, weights[0].name if weights else "",
                                  sum(map(self._weight_bytes, weights)), out.nbytes, tuple(args), out))
        return out

    def _info(self, a, args) -> ArgInfo:
        if isinstance(a, Meta):
            return ArgInfo(a.shape, a.dtype_name)
        if isinstance(a, Cache):
            if self._caches is not None:
                return self._caches[1][a.layer][a.part == "v"]
            # A one-block placeholder with the head geometry of this call's k (or v) argument.
            new = args[1 if a.part == "k" else 2]
            return ArgInfo((1, 1) + tuple(new.shape[1:]), "f32")
        info = self._infos.get(a)  # a weight's description never changes: made once
        if info is None:
            w = self.weights.host(a.name)
            info = ArgInfo(w.shape, w.fmt, w.layout) if isinstance(a, Matrix) else ArgInfo(w.shape, "f32")
            self._infos[a] = info
        return info

    def _weight_bytes(self, a) -> int:
        w = self.weights.host(a.name)
        return int(np.asarray(w.data).nbytes) if isinstance(a, Matrix) else int(np.prod(w.shape)) * 4
