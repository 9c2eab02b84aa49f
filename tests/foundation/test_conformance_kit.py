"""The conformance kit: passes correct kernels (the reference backend, the example plugin), and reports wrong,
NaN-producing, crashing, incapable and misplaced kernels for what they are."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from rocmforge_core import ops
from rocmforge_core.backend import HostBackend
from rocmforge_core.conformance import FAIL, SKIP, checks, compare, run_conformance
from rocmforge_core.errors import PluginError
from rocmforge_core.hookspecs import hookimpl
from rocmforge_core.ops import Kernel, Tolerance, no

from .helpers import add, run_python, write_dist


class KernelPlugin:
    def __init__(self, *kernels, backends=()):
        self.kernels, self.backends = kernels, backends

    @hookimpl
    def register_kernels(self, register):
        for k in self.kernels:
            register(k)

    @hookimpl
    def register_backends(self, register):
        for b in self.backends:
            register(b)


def only(results, kernel):
    found = [r for r in results if r.name.startswith(kernel + "[")]
    assert found, f"no results for {kernel}"
    return found


def test_reference_backend_passes_every_case_of_every_op(example_registry):
    results = run_conformance(example_registry, backend="reference", seed=11)
    assert [r for r in results if not r.passed] == []
    assert {r.op for r in results} == set(ops.OP_NAMES)
    # the example format's weights go through every weight-taking op
    assert {r.op for r in results if "TQ2_0" in r.name} == {"matmul", "dequant", "embedding"}


def test_example_plugin_selection_covers_its_kernel_and_its_format(example_registry):
    results = run_conformance(example_registry, plugin="example", seed=5)
    names = {r.name.split("[")[0] for r in results}
    assert names == {"example.rmsnorm", "reference.matmul", "reference.dequant", "reference.embedding",
                     "format.TQ2_0"}
    assert all(r.passed for r in results), [r.message for r in results if not r.passed]


def test_unknown_name_is_a_clear_error(example_registry):
    with pytest.raises(PluginError, match="no plugin or backend named nope"):
        run_conformance(example_registry, plugin="nope")


def test_seed_fixes_the_cases_and_changes_them(example_registry):
    def first_args(seed):
        return [getattr(a, "data", a) for c in checks(example_registry, ["example"], seed) if c.kernel
                for a in c.case.args[:1]]
    a, b, c = first_args(1), first_args(1), first_args(2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def wrong_rmsnorm(x, w, *, eps):
    return (x * w).astype(np.float32)  # forgot to normalize


def test_a_wrong_kernel_fails_with_its_error_and_seed(example_registry):
    add(example_registry, "wrong", KernelPlugin(Kernel("rmsnorm", "reference", "wrong.rmsnorm", wrong_rmsnorm)))
    results = run_conformance(example_registry, plugin="wrong", seed=77)
    assert results and all(r.status == FAIL for r in results)
    assert "normalized MSE" in results[0].message and results[0].seed == 77


def test_nan_never_passes(example_registry):
    def nan_scale(x, *, s):
        out = (x * np.float32(s)).astype(np.float32)
        out.flat[3] = np.nan
        return out
    loose = Kernel("scale", "reference", "nan.scale", nan_scale)
    add(example_registry, "nan", KernelPlugin(loose))
    (result,) = run_conformance(example_registry, plugin="nan")
    assert result.status == FAIL and "non-finite" in result.message
    assert compare(np.array([np.nan], np.float32), np.array([1.0], np.float32), Tolerance(nmse=1e9))


def test_crash_wrong_dtype_and_wrong_shape_fail(example_registry):
    add(example_registry, "bad", KernelPlugin(
        Kernel("add", "reference", "bad.add_raises", lambda a, b: 1 / 0),
        Kernel("add", "reference", "bad.add_f64", lambda a, b: np.add(a, b, dtype=np.float64)),
        Kernel("transpose", "reference", "bad.transpose_view", lambda x: x.reshape(x.shape[::-1])),
    ))
    results = run_conformance(example_registry, plugin="bad")
    assert all(r.status == FAIL for r in only(results, "bad.add_raises") + only(results, "bad.add_f64"))
    assert "ZeroDivisionError" in only(results, "bad.add_raises")[0].message
    assert "dtype float64, expected float32" in only(results, "bad.add_f64")[0].message
    # (1, 7) reshaped is the right shape by accident but wrong values; the others differ in values too
    first, *others = only(results, "bad.transpose_view")
    assert first.passed and others and all(r.status == FAIL and "values differ" in r.message for r in others)


def test_sample_must_match_exactly(example_registry):
    def off_by_one(*args, **params):
        return ops.reference("sample")(*args, **params) + 1
    add(example_registry, "sampler", KernelPlugin(Kernel("sample", "reference", "sampler.off", off_by_one)))
    results = run_conformance(example_registry, plugin="sampler")
    assert results and all(r.status == FAIL and "values differ" in r.message for r in results)


def test_attention_must_write_the_cache_in_place(example_registry):
    def forgetful(q, k, v, k_cache, v_cache, *rest, **params):
        return ops.reference("attention")(q, k, v, k_cache.copy(), v_cache.copy(), *rest, **params)
    add(example_registry, "forgetful", KernelPlugin(Kernel("attention", "reference", "forgetful.attention", forgetful)))
    results = run_conformance(example_registry, plugin="forgetful")
    assert results and all(r.status == FAIL and "written in place" in r.message for r in results)


def test_incapable_kernel_is_skipped_with_its_reason(example_registry):
    kernel = Kernel("rmsnorm", "reference", "picky.rmsnorm", wrong_rmsnorm, lambda sig: no("only d=4096 rows"))
    add(example_registry, "picky", KernelPlugin(kernel))
    results = run_conformance(example_registry, plugin="picky")
    assert results and all(r.status == SKIP and "only d=4096 rows" in r.message for r in results)


class Unavailable(HostBackend):
    name = "ghost"

    def available(self):
        return no("the ghost runtime is not installed")

    def devices(self):
        return []


def test_unavailable_backend_skips_and_missing_backend_fails(example_registry):
    add(example_registry, "ghost", KernelPlugin(Kernel("add", "ghost", "ghost.add", ops.reference("add")),
                                                backends=[Unavailable()]))
    add(example_registry, "orphan", KernelPlugin(Kernel("add", "nowhere", "orphan.add", ops.reference("add"))))
    ghost = run_conformance(example_registry, plugin="ghost")
    assert ghost and all(r.status == SKIP and "ghost runtime is not installed" in r.message for r in ghost)
    orphan = run_conformance(example_registry, plugin="orphan")
    assert orphan and all(r.status == FAIL and "no plugin provides" in r.message for r in orphan)


def test_compare_rules():
    f = lambda *v: np.array(v, dtype=np.float32)  # noqa: E731
    assert compare(f(1, 2), f(1, 2), Tolerance(nmse=0.0)) == ""
    assert "differ" in compare(f(1, 2), f(1, 2.0001), Tolerance(nmse=0.0))
    assert compare(f(1, 2), f(1, 2.0001), Tolerance(nmse=1e-7)) == ""
    assert "exceeds" in compare(f(1, 2), f(1, 2.1), Tolerance(nmse=1e-7))
    assert "shape" in compare(f(1, 2), f(1, 2, 3), Tolerance())
    assert "values differ" in compare(np.array([3], np.int32), np.array([4], np.int32), Tolerance(exact=True))
    assert "non-finite" in compare(f(np.inf, 1), f(1, 1), Tolerance(nmse=1.0))


WRONG_PLUGIN = """
    import numpy as np
    from rocmforge_core.hookspecs import hookimpl
    from rocmforge_core.ops import Kernel, no

    def rmsnorm(x, w, *, eps):
        return (x * w).astype(np.float32)

    @hookimpl
    def register_kernels(register):
        register(Kernel("rmsnorm", "reference", "wrong.rmsnorm", rmsnorm))
        register(Kernel("add", "reference", "wrong.picky_add", np.add, lambda sig: no("adds only on Tuesdays")))
"""


def test_pytest_plugin_is_opt_in_reports_failures_with_seed_and_skip_reasons(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    write_dist(site, "rocmforge-wrong", "wrong", "rocmforge_wrong", WRONG_PLUGIN)
    work = tmp_path / "work"
    work.mkdir()
    common = ["-m", "pytest", "-p", "no:cacheprovider", "-q"]

    plain = run_python(common, plugins="reference,wrong", path=site, cwd=work)
    assert "no tests ran" in plain.stdout  # nothing is generated without the option

    proc = run_python(common + ["--rocmforge-conformance=wrong", "--rocmforge-seed=123"],
                      plugins="reference,wrong", path=site, cwd=work)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "FAILED rocmforge-conformance::wrong.rmsnorm[" in out
    assert "normalized MSE" in out and "--rocmforge-seed=123" in out
    assert "SKIPPED" in out and "adds only on Tuesdays" in out
    assert "3 failed" in out and "2 skipped" in out

    ok = run_python(common + ["--rocmforge-conformance=reference"], plugins="reference", path=site, cwd=work)
    assert ok.returncode == 0 and " passed" in ok.stdout and "failed" not in ok.stdout, ok.stdout


def test_pytest_plugin_marks_device_backends_gpu(tmp_path):
    """Kernels of non-host backends carry the gpu marker, so CI's `-m 'not gpu'` leaves them to the device run."""
    site = tmp_path / "site"
    site.mkdir()
    write_dist(site, "rocmforge-dev", "dev", "rocmforge_dev", textwrap.dedent("""
        import numpy as np
        from rocmforge_core.backend import HostBackend
        from rocmforge_core.hookspecs import hookimpl
        from rocmforge_core.ops import Kernel, reference

        class Device(HostBackend):
            name, is_host = "dev", False
            def devices(self):
                return []

        @hookimpl
        def register_backends(register):
            register(Device())

        @hookimpl
        def register_kernels(register):
            register(Kernel("add", "dev", "dev.add", reference("add")))
    """))
    args = ["-m", "pytest", "-p", "no:cacheprovider", "-q", "--rocmforge-conformance=dev", "--co"]
    everything = run_python(args, plugins="reference,dev", path=site, cwd=tmp_path)
    assert "dev.add[" in everything.stdout
    not_gpu = run_python(args + ["-m", "not gpu"], plugins="reference,dev", path=site, cwd=tmp_path)
    assert "dev.add[" not in not_gpu.stdout and "no tests collected" in not_gpu.stdout


class Box:
    """A device-like tensor: not a numpy array, reached only through its backend."""
    def __init__(self, array):
        self.array = array
        self.shape = array.shape
        self.dtype_name = {"float32": "f32", "int32": "i32"}[array.dtype.name]

    def reshape(self, *shape):
        return Box(self.array.reshape(*shape))


class Boxed(HostBackend):
    name, is_host = "boxed", False

    def devices(self):
        return []

    def from_host(self, array):
        return Box(np.array(array, copy=True))

    def to_host(self, tensor):
        return np.array(tensor.array, copy=True)


def boxed(op):
    def fn(*args, **params):
        return Box(ops.reference(op)(*(a.array if isinstance(a, Box) else a for a in args), **params))
    return Kernel(op, "boxed", f"boxed.{op}", fn)


def test_device_like_backend_round_trips_through_its_own_memory(example_registry):
    add(example_registry, "boxed", KernelPlugin(boxed("add"), boxed("attention"), backends=[Boxed()]))
    results = run_conformance(example_registry, plugin="boxed")
    assert {r.op for r in results} == {"add", "attention"}
    assert all(r.passed for r in results), [r.message for r in results if not r.passed]
