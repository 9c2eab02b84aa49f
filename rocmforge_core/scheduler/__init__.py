"""Placement of op call sites on kernels: profiles, measured costs and copy minimisation (placement.py), the
planner the engine asks (hybrid.py) with transparent fallback at run time (guard.py). See docs/SCHEDULER.md."""

from rocmforge_core.scheduler.hybrid import KernelFailure, Planner
from rocmforge_core.scheduler.plan import Choice, Plan

__all__ = ["Choice", "KernelFailure", "Plan", "Planner"]
