"""Shared pieces of the format tests: the sixteen formats, a registry loaded from entry points, bit comparison."""

from __future__ import annotations

import numpy as np
from gguf.constants import GGMLQuantizationType

from rocmforge_core.registry import Registry

FORMATS = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
           "IQ4_NL", "IQ4_XS", "MXFP4")
QUANTIZABLE = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "MXFP4")


def load_registry() -> Registry:
    registry = Registry()
    registry.load_entry_points([f"format.{name.lower()}" for name in FORMATS])
    return registry


def gguf_type(name: str) -> GGMLQuantizationType:
    return GGMLQuantizationType[name]


def assert_same_floats(actual: np.ndarray, expected: np.ndarray, what: str = "") -> None:
    """Equal float32 bit patterns, except that any NaN matches any NaN (payloads are not part of the format)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float32)
    assert actual.dtype == np.float32, f"{what}: dtype {actual.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    a_nan, e_nan = np.isnan(actual), np.isnan(expected)
    assert np.array_equal(a_nan, e_nan), f"{what}: NaNs at different places"
    differ = (actual.view(np.uint32) != expected.view(np.uint32)) & ~a_nan
    if differ.any():
        i = tuple(int(k) for k in np.argwhere(differ)[0])
        raise AssertionError(f"{what}: {int(differ.sum())} values differ, first at {i}: "
                             f"{actual[i]!r} != {expected[i]!r}")
