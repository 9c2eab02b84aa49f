"""Compile time of the cpu kernels: counted apart (the engine reports it apart from prefill and decode), a
one-line notice on any stderr when it takes long, and `rocmforge warmup` leaving nothing to compile."""

from __future__ import annotations

import io
import time

import numba
import numpy as np

from rocmforge_core.cli import main
from rocmforge_core.cli.generation import statistics
from rocmforge_core.engine.engine import Stats
from rocmforge_core.models.synthetic import TinyConfig, write_model
from rocmforge_cpu_simd import compiling
from rocmforge_cpu_simd.jit import fast, serial_and_parallel


def test_long_compilations_give_one_notice_on_any_stream(monkeypatch):
    monkeypatch.setattr(compiling, "NOTICE_AFTER_S", 0.05)
    stream = io.StringIO()  # not a terminal
    watch = compiling._Watch(stream)
    for _ in range(2):
        watch.on_start(None)
        watch.on_start(None)  # a nested compilation
        time.sleep(0.2)
        watch.on_end(None)
        watch.on_end(None)
    assert stream.getvalue() == compiling.NOTICE + "\n"
    assert 0.35 < watch.seconds() < 2


def test_a_short_compilation_gives_no_notice(monkeypatch):
    stream = io.StringIO()
    watch = compiling._Watch(stream)
    watch.on_start(None)
    watch.on_end(None)
    time.sleep(compiling.NOTICE_AFTER_S + 0.1)
    assert stream.getvalue() == "" and watch.seconds() < compiling.NOTICE_AFTER_S


def test_numba_compilations_are_counted(cpu):
    scale = float(np.random.default_rng().integers(1 << 30))  # a new closure constant: compiled, never cached

    @numba.njit
    def fresh(x):
        return x * scale

    before = cpu.compile_seconds()
    fresh(1.0)
    assert cpu.compile_seconds() > before


def _double(x, out):
    for i in numba.prange(x.shape[0]):
        out[i] = 2 * x[i]


def test_twins_are_compiled_for_what_the_other_build_met():
    builds = serial_and_parallel(_double, fast)
    x = np.arange(4, dtype=np.int16)
    builds[False](x, np.empty_like(x))
    assert len(builds[False].signatures) == 1 and not builds[True].signatures
    compiling.compile_twins()
    assert builds[True].signatures == builds[False].signatures


def test_statistics_report_compile_time_apart():
    line = statistics(Stats("cpu", 0.2, 5, 0.1, 3, 0.3, compile_s=4.25, seed=1))
    assert "compile 4.25 s" in line and "prompt 5 tokens in 0.10 s" in line
    assert "compile" not in statistics(Stats("cpu", 0.2, 5, 0.1, 3, 0.3, seed=1))


def test_warmup_leaves_nothing_to_compile(tmp_path, capsys):
    path = tmp_path / "tiny-q8.gguf"
    write_model(path, "llama", TinyConfig(dtype="Q8_0", d_model=64, d_ff=128, vocab_size=128), seed=1)
    assert main(["warmup", "-m", str(path), "--backend", "cpu", "-t", "2"]) == 0
    assert "rocmforge: warmup of cpu for 1 model(s) done in" in capsys.readouterr().err
    for builds in compiling._pairs:
        assert {tuple(s) for s in builds[False].signatures} == {tuple(s) for s in builds[True].signatures}
