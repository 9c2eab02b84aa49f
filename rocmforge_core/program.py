"""A traced step: the op calls of one forward pass, their signatures and their dataflow.

``engine.forward.Forward.trace`` runs a model's code on shape-only tensors (``Meta``) and returns a ``Program``:
one ``Site`` per op call, in order, each naming where its arguments come from (an earlier site, a step input, a
weight, the KV cache). The scheduler places a program's sites on kernels; the engine's executor binds a placed
program to tensors and runs it every step. This module depends on nothing but the ops, so both can use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from rocmforge_core.ops import ITEMSIZE, Signature

# A step's inputs, written by the engine before each step on its preferred backend; arguments and Site.inputs name
# them by these (negative) ids, sites by their index.
(TOKENS, POSITIONS, SEQ_IDS, OUT_ROWS, BLOCK_TABLES, HISTORY, SAMPLE_PARAMS, SAMPLE_CONTROLS, TOKEN_MASK, BIAS_IDS,
 BIAS_VALUES) = range(-1, -12, -1)
STEP_INPUTS = {TOKENS: "token ids", POSITIONS: "positions", SEQ_IDS: "sequence ids", OUT_ROWS: "output rows",
               BLOCK_TABLES: "block tables", HISTORY: "sampling history", SAMPLE_PARAMS: "sampling parameters",
               SAMPLE_CONTROLS: "sampling controls", TOKEN_MASK: "allowed-token mask", BIAS_IDS: "logit bias ids",
               BIAS_VALUES: "logit bias values"}
_LAYER = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class Meta:
    """A shape-only tensor while tracing: ``src`` is the site that makes it (its index) or a step input's id."""
    shape: tuple[int, ...]
    dtype_name: str = "f32"
    src: int | None = None

    def reshape(self, *shape: int) -> "Meta":
        if int(np.prod(shape)) != int(np.prod(self.shape)):
            raise ValueError(f"cannot reshape {self.shape} to {shape}")
        return Meta(tuple(shape), self.dtype_name, self.src)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * ITEMSIZE.get(self.dtype_name, 4)


@dataclass(frozen=True)
class Matrix:
    """A weight passed in its stored format (matmul weights, embedding tables)."""
    name: str


@dataclass(frozen=True)
class Dense:
    """A small weight passed as an f32 tensor (norm weights, biases, rope frequency factors)."""
    name: str


@dataclass(frozen=True)
class Cache:
    """Layer ``layer``'s KV cache, keys (``part`` "k") or values ("v"): state that outlives the step."""
    part: str
    layer: int


@dataclass(frozen=True)
class Site:
    """One op call of a traced step, as the scheduler places it and the executor runs it.

    Named after the GGUF tensor it uses ("blk.7.ffn_down") or the layer part it computes ("blk.7.attn"), so
    profiles and ``explain`` match it by regex. ``inputs`` lists the sites (indices) and step inputs (ids) it
    reads, None meaning just the previous site (hand-made sites in tests); ``args`` are its arguments (``Meta``,
    ``Matrix``, ``Dense`` or ``Cache``) and ``params`` its static parameters."""
    name: str
    op: str
    sig: Signature
    phase: str
    inputs: tuple[int, ...] | None = ()
    weight: str = ""               # GGUF tensor this site reads, if any
    weight_bytes: int = 0
    out_bytes: int = 0             # size of its result, what a copy to another backend moves
    args: tuple = ()
    out: Meta | None = None

    @property
    def layer(self) -> int | None:
        found = _LAYER.match(self.name)
        return int(found.group(1)) if found else None

    @property
    def fmt(self) -> str | None:
        """The quant format of the site's weight: GGUF type names are upper case, plain tensors' dtypes not."""
        for arg in self.sig.args:
            if arg.dtype[:1].isupper():
                return arg.dtype
        return None

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.phase)

    @property
    def params(self) -> dict:
        return dict(self.sig.params)


@dataclass
class Program:
    """One step shape: ``m`` tokens, ``n_out`` rows of logits, sampled. ``logits``, ``tokens`` and ``logprobs`` are
    the indices of the sites whose results are the logits, the sampled token ids and (-1: none traced) the
    log-probabilities. A program whose ``output`` is "hidden" ends at the final hidden states instead (``logits``
    names that site): no output matrix, no sampling, no log-probabilities."""
    phase: str
    m: int
    n_out: int
    sites: list[Site] = field(default_factory=list)
    logits: int = -1
    output: str = "logits"
    tokens: int = -1
    logprobs: int = -1
