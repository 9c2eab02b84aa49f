"""A bounded fuzz run for CI: hypothesis mutates a seed corpus of small GGUF files (written with GGUFWriter) and
the loader must either succeed or raise GGUFError — never crash, hang or allocate hugely. Long local runs:
tests/gguf/fuzz/fuzz_atheris.py."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gguf_fuzz_harness import exercise, write_seeds
from rocmforge_core.gguf import open_gguf

EXAMPLES = int(os.environ.get("ROCMFORGE_FUZZ_EXAMPLES", "300"))  # raise it for a longer local run
U32 = [0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 30, 31, 32, 33, 39, 41, 99, 255, 2**31 - 1, 2**31, 2**32 - 1]
U64 = U32 + [2**32, 2**40, 2**62, 2**63 - 1, 2**63, 2**64 - 32, 2**64 - 1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[tuple[bytes, int]]:
    """(file bytes, header length) of each seed."""
    return [(p.read_bytes(), open_gguf(p).data_offset) for p in write_seeds(tmp_path_factory.mktemp("seeds"))]


def _mutation(header: int, size: int):
    pos = st.one_of(st.integers(0, max(header - 1, 0)), st.integers(0, size - 1))
    return st.one_of(
        st.tuples(st.just("byte"), pos, st.integers(0, 255)),
        st.tuples(st.just("u32"), pos, st.sampled_from(U32)),
        st.tuples(st.just("u64"), pos, st.sampled_from(U64 + [size, size // 2])),
        st.tuples(st.just("cut"), pos, st.just(0)),
        st.tuples(st.just("insert"), pos, st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("delete"), pos, st.integers(1, 16)),
    )


def mutate(data: bytes, ops) -> bytes:
    out = bytearray(data)
    for op, pos, arg in ops:
        pos = min(pos, len(out))
        if op == "byte" and pos < len(out):
            out[pos] = arg
        elif op == "u32" and pos + 4 <= len(out):
            struct.pack_into("<I", out, pos, arg)
        elif op == "u64" and pos + 8 <= len(out):
            struct.pack_into("<Q", out, pos, arg)
        elif op == "cut":
            del out[pos:]
        elif op == "insert":
            out[pos:pos] = arg
        elif op == "delete":
            del out[pos:pos + arg]
    return bytes(out)


@st.composite
def mutated(draw, corpus):
    data, header = draw(st.sampled_from(corpus))
    ops = draw(st.lists(_mutation(header, len(data)), min_size=1, max_size=4))
    return mutate(data, ops)


def test_fuzz_open(corpus, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "case.gguf"
    outcomes = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(mutated(corpus))
    def run(data):
        path.write_bytes(data)
        outcomes.append(exercise(path))

    for data, _ in corpus:  # the seeds themselves are valid
        path.write_bytes(data)
        assert exercise(path) == "ok"
    run()
    # the run exercised both the error paths and files that still open
    assert "ok" in outcomes and any(o != "ok" for o in outcomes)
