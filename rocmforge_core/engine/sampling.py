"""Sampling parameters: llama.cpp's sampler chain and defaults (penalties, top-k, typical, top-p, min-p,
temperature, seeded draw), computed by the ``sample`` op so a GPU backend can sample where the logits are."""

from __future__ import annotations

import math
import numbers
import secrets
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from rocmforge_core.errors import RocmforgeError
from rocmforge_core.ops import sample


class SamplingError(RocmforgeError):
    """A sampling parameter is out of range; ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


# field -> (integer?, low, high, low bound excluded?): the one range check of `rocmforge run` and the server
# (OpenAI's ranges where it has them: temperature up to 2, penalties within +-2)
RANGES = {
    "temperature": (False, 0.0, 2.0, False),
    "top_k": (True, 0, 2 ** 31 - 1, False),
    "top_p": (False, 0.0, 1.0, True),
    "min_p": (False, 0.0, 1.0, False),
    "typical_p": (False, 0.0, 1.0, True),
    "repeat_penalty": (False, 0.0, 1e6, True),
    "presence_penalty": (False, -2.0, 2.0, False),
    "frequency_penalty": (False, -2.0, 2.0, False),
    "penalty_last_n": (True, 0, 1 << 20, False),
    "seed": (True, 0, 2 ** 64 - 1, False),
}


def check_field(field: str, value) -> None:
    """SamplingError unless ``value`` is a number of the field's kind within its range."""
    integer, lo, hi, lo_open = RANGES[field]
    kind = "an integer" if integer else "a finite number"
    ok_type = isinstance(value, numbers.Integral if integer else numbers.Real) and not isinstance(value, bool)
    if not ok_type or not (integer or math.isfinite(value)) or value < lo or value > hi or (lo_open and value == lo):
        interval = f"{'(' if lo_open else '['}{_bound(lo)}, {_bound(hi)}]"
        raise SamplingError(field, f"{field} must be {kind} in {interval}, got {_shown(value)}")


def _bound(x) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _shown(value) -> str:
    if isinstance(value, (str, bool, numbers.Real)) or value is None:
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return f"a {type(value).__name__}"  # not a list or object of any size


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.8      # 0: greedy
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
        for name in RANGES:
            if name != "seed" or self.seed is not None:
                check_field(name, getattr(self, name))

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
_ROW_FIELDS = tuple(f for f in SamplingParams.__dataclass_fields__ if f in sample.DEFAULTS)


@dataclass(frozen=True, eq=False)
class RowSampling:
    """How one row of a step's logits is sampled: parameters (with a concrete seed), the draw's counter (tokens
    the sequence generated so far), the recent tokens the penalties see, the allowed tokens (``mask``: the
    ``sample`` op's i32[ceil(V/32)] bit words, None for all), a sparse logit ``bias`` ((id, value) pairs) and
    whether the step should compute the row's log-probabilities."""
    params: SamplingParams = GREEDY
    step: int = 0
    history: Sequence[int] = ()
    mask: np.ndarray | None = None
    bias: Sequence[tuple[int, float]] = ()
    logprobs: bool = False

    @property
    def penalty_window(self) -> int:
        """Recent tokens the penalties look back over: 0 when no penalty acts."""
        p = self.params
        penalized = p.repeat_penalty != 1.0 or p.presence_penalty != 0.0 or p.frequency_penalty != 0.0
        return p.penalty_last_n if penalized else 0

    def as_row(self) -> dict:
        p, window = self.params, self.penalty_window
        row = {k: getattr(p, k) for k in _ROW_FIELDS}  # not asdict: its deep copies cost ~50 us a row
        row.update(seed=p.seed or 0, step=self.step,
                   history=list(self.history)[-window:] if window else (),
                   mask=self.mask, bias=self.bias, logprobs=self.logprobs)
        return row
