"""Backend availability as planning sees it. Call sites themselves (``Site``) are the traced program's
(rocmforge_core/program.py): one op call of a model's forward pass, named after the GGUF tensor it uses, once per
phase."""

from __future__ import annotations

from rocmforge_core.ops import Verdict, no


def availability(backend) -> Verdict:
    """``backend.available()``, with a backend whose check itself fails counted as unavailable (planning must
    not crash on one broken plugin)."""
    try:
        return backend.available()
    except Exception as exc:
        return no(f"its availability check raised {type(exc).__name__}: {exc}")
