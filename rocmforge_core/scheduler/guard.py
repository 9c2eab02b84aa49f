"""Transparent fallback at run time: the engine runs every kernel through ``run_op`` and every step through
``check_step``.

A kernel that raises is replaced at once (``Planner.fail``) and the op re-runs on the next candidate with
the same inputs. Non-finite results are caught per step, which costs one read of the logits: when a step's logits
are not all finite, the step runs again with every op's output checked, and an op whose output is non-finite
where the numpy reference on the same inputs is finite is failed over the same way. Re-running a step is safe:
it only rewrites the KV cache slots of its own tokens. An attention kernel replaced by one of another backend
takes its layer's KV cache along.
"""

from __future__ import annotations

import numpy as np

from rocmforge_core import ops
from rocmforge_core.errors import BackendError
from rocmforge_core.formats import dequantize_weight


class NonFinite(Exception):
    pass


def run_op(forward, planner, op: str, site: str, sig, choice, args: tuple, params: dict, resident):
    """Run ``choice``'s kernel on ``args`` (on its backend); on failure, the planner's next candidate."""
    checking = getattr(planner, "checking", False)
    while True:
        backend = forward.backends[choice.backend]
        if op == "attention" and not backend.owns(args[3]):
            args = _move_cache(forward, backend, site, args)
        moved = tuple(forward._on(backend, a) for a in args)
        try:
            out = choice.kernel.fn(*moved, **params)
            if checking and op != "sample":
                _check_finite(forward, backend, out, op, args, params)
            return out
        except Exception as exc:
            if not hasattr(planner, "fail"):
                raise
            problem = str(exc) if isinstance(exc, NonFinite) else f"raised {type(exc).__name__}: {exc}"
            choice = planner.fail(site, forward.phase, sig, choice.kernel, problem, resident)


def _move_cache(forward, backend, site: str, args: tuple) -> tuple:
    """An attention fallback onto another backend takes its layer's KV cache along (the planner keeps the layer's
    attention there from then on, in both phases)."""
    cache = forward.cache
    layer = next((i for i, t in enumerate(cache.k) if t is args[3]), None) if cache is not None else None
    source = next((b for b in forward.backends.values() if b.owns(args[3])), None)
    if layer is None or source is None:
        raise BackendError(f"{site}: the KV cache of this layer is not on backend {backend.name}, which runs it")
    cache.k[layer] = backend.copy_from(args[3], source)
    cache.v[layer] = backend.copy_from(args[4], source)
    return args[:3] + (cache.k[layer], cache.v[layer]) + args[5:]


def check_step(forward, planner, logits, rerun):
    """The step's logits, recomputed with per-op checks when they hold non-finite values."""
    if not hasattr(planner, "fail") or forward.all_finite(logits):
        return logits
    planner.checking = True
    try:
        return rerun()
    finally:
        planner.checking = False


def _check_finite(forward, backend, out, op, args, params) -> None:
    if np.isfinite(backend.to_host(out)).all():
        return
    expected = ops.reference(op)(*(_host(forward, a) for a in args), **params)
    if np.isfinite(expected).all():
        raise NonFinite("returned non-finite values where the reference does not")


def _host(forward, a):
    from rocmforge_core.engine.forward import Dense, Matrix
    if isinstance(a, Matrix):
        return forward.weights.host(a.name)
    if isinstance(a, Dense):
        return dequantize_weight(forward.weights.host(a.name))
    if isinstance(a, np.ndarray):
        return a.copy()  # the reference may write (attention's cache): never into the engine's own arrays
    return forward.to_host(a)
