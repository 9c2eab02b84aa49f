"""The call as a backend would run it. A format may repack its weights for a backend at upload (``repackers``),
and that backend's kernels then ask for their own layout, so a capability query needs the layout each backend
would give the weight. Planning must not upload every weight to every backend to learn it: the layout is learnt
once per (backend, format, width) by uploading a small random weight of that format (at most 256 rows). The
engine checks the chosen kernel again on the real upload before running it."""

from __future__ import annotations

import numpy as np

from rocmforge_core.ops import ArgInfo, Signature

PROBE_ROWS = 256


class LayoutProbe:
    def __init__(self, registry):
        self.registry = registry
        self.layouts: dict[tuple[str, str, tuple], str] = {}
        self.rng = np.random.default_rng(0)

    def __call__(self, sig: Signature, backend: str) -> Signature:
        if not any(a.dtype[:1].isupper() for a in sig.args):
            return sig
        return Signature(sig.op, tuple(self._resident(a, backend) if a.dtype[:1].isupper() else a
                                       for a in sig.args), sig.params)

    def _resident(self, arg: ArgInfo, backend: str) -> ArgInfo:
        key = (backend, arg.dtype, arg.shape[1:])
        if key not in self.layouts:
            self.layouts[key] = self._probe(arg, backend)
        return ArgInfo(arg.shape, arg.dtype, self.layouts[key])

    def _probe(self, arg: ArgInfo, backend: str) -> str:
        fmt = self.registry.formats.get(arg.dtype)
        be = self.registry.backends.get(backend)
        if fmt is None or be is None:
            return arg.layout
        try:
            weight = fmt.random_weight(self.rng, "probe", (min(arg.shape[0], PROBE_ROWS),) + tuple(arg.shape[1:]))
            return be.upload_weight(weight).layout
        except Exception:  # a backend that cannot take this weight: its kernels will say no to the plain layout
            return arg.layout
