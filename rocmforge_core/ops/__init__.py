"""Op interfaces: what an op computes (a numpy reference), what a call looks like, and who can run it.

Each op lives in its own module (``rocmforge_core.ops.<name>``) and defines:
  SPEC       an ``OpSpec``: name, version, the tolerance the conformance kit applies, ``cases(rng, formats)``
             (randomized calls used to test every kernel), and the facts the rest of the engine needs about a
             call: its result's shape, a work estimate, whether it is cheap, a representative call, which
             arguments are state;
  reference  the numpy oracle, float32 arithmetic, exact dequantization.

A new op is one module here, one ``Forward`` method (engine/forward.py) and its kernels.

A kernel answers ``supports(signature) -> Verdict`` for a concrete call (shapes, dtypes, quant format, params).
That answer is capability only; which capable kernel runs is policy, decided by the scheduler.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

OP_NAMES = (
    "embedding", "matmul", "attention", "dequant", "transpose", "sample", "logprobs",
    "rmsnorm", "rope", "activation", "add", "scale",
)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


def yes(reason: str = "supported") -> Verdict:
    return Verdict(True, reason)


def no(reason: str) -> Verdict:
    return Verdict(False, reason)


@dataclass(frozen=True)
class ArgInfo:
    """One argument of a concrete call. ``dtype`` is 'f32', 'f16', 'i32', ... for plain tensors and the GGUF
    type name ('Q4_0', 'F16', ...) for weights; ``layout`` names a repacked weight layout ('' = as in GGUF)."""
    shape: tuple[int, ...]
    dtype: str
    layout: str = ""


@dataclass(frozen=True)
class Signature:
    op: str
    args: tuple[ArgInfo, ...]
    params: tuple[tuple[str, Any], ...] = ()

    def param(self, key: str, default: Any = None) -> Any:
        return dict(self.params).get(key, default)

    def __str__(self) -> str:
        args = ", ".join(f"{a.dtype}{list(a.shape)}{'@' + a.layout if a.layout else ''}" for a in self.args)
        params = "".join(f", {k}={v!r}" for k, v in self.params)
        return f"{self.op}({args}{params})"


def arg_info(value: Any) -> ArgInfo:
    """Describe a value (numpy array, ``Weight`` or backend tensor) for a signature."""
    if isinstance(value, np.ndarray):
        return ArgInfo(tuple(value.shape), DTYPE_NAMES[value.dtype.type])
    return ArgInfo(tuple(value.shape), value.dtype_name, getattr(value, "layout", ""))


DTYPE_NAMES = {np.float32: "f32", np.float16: "f16", np.float64: "f64", np.int32: "i32", np.int64: "i64",
               np.uint8: "u8"}


def signature(op: str, args: tuple, params: dict) -> Signature:
    return Signature(op, tuple(arg_info(a) for a in args), tuple(sorted(params.items())))


@dataclass(frozen=True)
class Tolerance:
    """Normalized mean squared error bound, as in ggml's test-backend-ops: sum((a-b)^2) / sum(b^2)."""
    nmse: float = 1e-7
    exact: bool = False  # integer outputs (token ids) must match exactly


@dataclass(frozen=True)
class Case:
    """One randomized call: positional arguments (numpy arrays or ``Weight``) and keyword params."""
    args: tuple
    params: dict = field(default_factory=dict)
    tolerance: Tolerance | None = None  # overrides the op's default (e.g. quantized-activation matmul)
    label: str = ""


ITEMSIZE = {"f32": 4, "f16": 2, "bf16": 2, "f64": 8, "i32": 4, "i64": 8, "u8": 1}


def itemsize(dtype: str, formats=None) -> float:
    """Bytes per element of a plain dtype, or of a GGUF type (from its registered format; 1 if unknown)."""
    if dtype in ITEMSIZE:
        return ITEMSIZE[dtype]
    fmt = formats.get(dtype) if formats is not None else None
    return fmt.type_size / fmt.block_size if fmt else 1.0


def elementwise_work(sig: "Signature", formats=None) -> tuple[float, float]:
    """(flops, bytes) of an op that touches each element of its arguments about once: a few flops per element
    of the first argument, every argument read once."""
    flops = 4.0 * float(np.prod(sig.args[0].shape)) if sig.args else 0.0
    return flops, sum(float(np.prod(a.shape)) * itemsize(a.dtype, formats) for a in sig.args)


def same_shape(args: tuple["ArgInfo", ...], params: dict) -> tuple[tuple[int, ...], str]:
    return tuple(args[0].shape), "f32"


@dataclass(frozen=True)
class OpSpec:
    """What the engine knows of an op besides its reference: the conformance cases, and per call (a Signature's
    arguments and params) the result's shape and dtype, a rough (flops, bytes) for the cost model, a typical
    call for the support matrix, and which arguments are state.

    ``state``: indices of arguments that persist across steps and are written in place (the KV cache): the call
    runs where its state lives, a fallback to another backend takes the state along, and the state's size is the
    run's, not the model's (the tuning cache leaves it out of its shape buckets).
    ``cheap``: element-wise work whose placement should follow its neighbours (moved only to save copies).
    ``representative(fmt, layout)``: a decode-step call with a weight of GGUF type ``fmt`` in ``layout`` (or
    'f32' for plain arrays), or None when the op takes no such argument.
    """
    name: str
    version: int
    doc: str
    tolerance: Tolerance
    cases: Callable[[np.random.Generator, Any], Iterator[Case]]  # (rng, the registered QuantFormats)
    out_shape: Callable[[tuple, dict], tuple[tuple[int, ...], str]] = same_shape
    work: Callable[[Any, Any], tuple[float, float]] = elementwise_work  # (signature, formats) -> (flops, bytes)
    representative: Callable[[str, str], "Signature | None"] = lambda fmt, layout: None
    state: tuple[int, ...] = ()
    cheap: bool = False
    weights: tuple[int, ...] = ()  # arguments that may be model weights in their stored format


@dataclass
class Kernel:
    """One implementation of one op on one backend.

    ``fn(*args, **params)`` takes arguments living on ``backend`` (numpy arrays for host backends) and returns
    the result there. ``priority`` ranks capable kernels of the same backend (higher first); ties break on name.
    """
    op: str
    backend: str
    name: str
    fn: Callable[..., Any]
    supports: Callable[[Signature], Verdict] = lambda sig: yes()
    priority: int = 0
    plugin: str = ""  # filled in by the registry

    def check(self, sig: Signature) -> Verdict:
        if sig.op != self.op:
            return no(f"{self.name} implements {self.op}, not {sig.op}")
        try:
            return self.supports(sig)
        except Exception as exc:  # a buggy capability query must not break planning
            return no(f"capability query raised {type(exc).__name__}: {exc}")


def spec(op: str) -> OpSpec:
    return module(op).SPEC


def reference(op: str) -> Callable[..., Any]:
    return module(op).reference


def module(op: str):
    if op not in OP_NAMES:
        raise KeyError(f"unknown op {op!r}; ops are {', '.join(OP_NAMES)}")
    return importlib.import_module(f"rocmforge_core.ops.{op}")


def nmse(actual: np.ndarray, expected: np.ndarray) -> float:
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    denom = float(np.sum(b * b))
    err = float(np.sum((a - b) ** 2))
    return err / denom if denom > 0 else err
