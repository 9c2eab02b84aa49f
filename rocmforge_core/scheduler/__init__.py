"""Placement of op call sites on kernels. ``plan.py`` holds the first simple planner (preferred backend, then
cpu, then reference, by registry ranking); the hybrid scheduler (profiles, measured costs) extends it."""

from rocmforge_core.scheduler.plan import Choice, Plan, Planner, backend_order

__all__ = ["Choice", "Plan", "Planner", "backend_order"]
