"""The engine: ``Model`` (a loaded, placed model), ``Engine`` (KV cache, steps, sampling, generation)."""

from rocmforge_core.engine.engine import ContextLengthError, Engine, Generation, Stats, StepResult
from rocmforge_core.engine.model import Model
from rocmforge_core.engine.sampling import RowSampling, SamplingParams

__all__ = ["ContextLengthError", "Engine", "Generation", "Model", "RowSampling", "SamplingParams", "Stats",
           "StepResult"]
