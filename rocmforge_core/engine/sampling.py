"""Sampling parameters: llama.cpp's sampler chain and defaults (penalties, top-k, typical, top-p, min-p,
temperature, seeded draw), computed by the ``sample`` op so a GPU backend can sample where the logits are."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from typing import Sequence

from rocmforge_core.errors import RocmforgeError
from rocmforge_core.ops import sample


class SamplingError(RocmforgeError):
    """A sampling parameter is out of range."""


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.8      # <= 0: greedy
    top_k: int = 40               # 0: off
    top_p: float = 0.95           # 1.0: off
    min_p: float = 0.05           # 0.0: off
    typical_p: float = 1.0        # 1.0: off
    repeat_penalty: float = 1.0   # 1.0: off
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    penalty_last_n: int = 64      # how many recent tokens the penalties see
    seed: int | None = None       # None: a random seed, reported in the statistics

    def __post_init__(self):
        checks = [
            (self.top_k >= 0, "top_k must be >= 0"),
            (0.0 < self.top_p <= 1.0, "top_p must be in (0, 1]"),
            (0.0 <= self.min_p <= 1.0, "min_p must be in [0, 1]"),
            (0.0 < self.typical_p <= 1.0, "typical_p must be in (0, 1]"),
            (self.repeat_penalty > 0.0, "repeat_penalty must be > 0"),
            (self.penalty_last_n >= 0, "penalty_last_n must be >= 0"),
            (self.seed is None or 0 <= self.seed < 2 ** 64, "seed must be in [0, 2**64)"),
        ]
        for ok, message in checks:
            if not ok:
                raise SamplingError(message)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def with_seed(self) -> "SamplingParams":
        """These parameters with a concrete seed (a random one if none was given)."""
        return self if self.seed is not None else SamplingParams(**{**asdict(self), "seed": secrets.randbits(32)})

    def op_params(self) -> dict:
        """The ``sample`` op's keyword parameters (without ``step``)."""
        p = asdict(self)
        del p["penalty_last_n"]
        return p


GREEDY = SamplingParams(temperature=0.0, seed=0)


@dataclass(frozen=True)
class RowSampling:
    """How one row of a step's logits is sampled: parameters (with a concrete seed), the draw's counter (tokens
    the sequence generated so far) and the recent tokens the penalties see."""
    params: SamplingParams = GREEDY
    step: int = 0
    history: Sequence[int] = ()

    def as_row(self) -> dict:
        p = self.params
        penalized = p.penalty_last_n and (p.repeat_penalty != 1.0 or p.presence_penalty != 0.0
                                          or p.frequency_penalty != 0.0)
        row = {k: v for k, v in asdict(p).items() if k in sample.DEFAULTS}
        row.update(seed=p.seed or 0, step=self.step,
                   history=list(self.history)[-p.penalty_last_n:] if penalized else ())
        return row
