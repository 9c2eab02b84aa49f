"""The conformance kit: every registered kernel checked against its op's numpy reference.

A pytest plugin shipped with the core (entry point ``pytest11``), idle unless asked for:

    pytest --rocmforge-conformance                 every kernel and format of every installed plugin
    pytest --rocmforge-conformance=hip,q4_k        kernels of plugin or backend 'hip', and every check that uses
                                                   a format of plugin 'q4_k' (names are entry-point or backend names)
    pytest --rocmforge-conformance -m rocmforge_conformance    only the kit, not the project's own tests
    pytest ... --rocmforge-seed=1234               reproduce a run (the seed is printed in the header and in every
                                                   failure)

For each kernel and each of its op SPEC's randomized cases it moves the arguments onto the kernel's backend
(``from_host``; ``upload_weight`` for weights), computes the signature of the call as the kernel receives it,
skips with the kernel's own reason when ``kernel.check(sig)`` says no, runs the kernel, brings the result back
(``to_host``) and compares it with the reference under the op's ``Tolerance`` (or the case's override).
Arguments the op writes in place (attention's KV cache) are compared too. A NaN never passes. Each format gets
a layout check as well (block sizes, dequantize/quantize shapes, finite values). A plugin that failed to load is one
check, ``plugin.NAME[load]``, that fails with its error: checking a broken plugin must not pass.

``run_conformance(registry, plugin=..., backend=...)`` is the same kit without pytest.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pytest

from rocmforge_core import ops
from rocmforge_core.errors import PluginError
from rocmforge_core.formats import QuantFormat, Weight
from rocmforge_core.ops import Case, Kernel, Tolerance, Verdict
from rocmforge_core.registry import PluginRecord, describe_error, get_registry, not_a_verdict, registry_in_use

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass
class Check:
    """One kernel on one case, one format's layout check (``fmt``), or a plugin that failed to load (``failed``):
    it has nothing else to check, and a check of it must not pass."""
    op: str
    label: str
    kernel: Kernel | None = None
    case: Case | None = None
    fmt: QuantFormat | None = None
    cached: "_Reference | None" = None
    failed: PluginRecord | None = None

    @property
    def name(self) -> str:
        if self.failed:
            return f"plugin.{self.failed.name}[{self.label}]"
        return f"{self.kernel.name}[{self.label}]" if self.kernel else f"format.{self.fmt.name}[{self.label}]"


@dataclass
class Result:
    name: str
    status: str  # pass, fail or skip
    message: str
    plugin: str
    backend: str
    op: str
    seed: int

    @property
    def passed(self) -> bool:
        return self.status == PASS


class _Reference:
    """The reference's answer to one case, computed once and shared by every kernel of the op."""

    def __init__(self, op: str, case: Case):
        self.op, self.case = op, case
        self._done = False

    def get(self) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        if not self._done:
            args = tuple(_host_copy(a) for a in self.case.args)
            self.expected = np.asarray(ops.reference(self.op)(*args, **self.case.params))
            # The arguments the reference wrote into are part of the op's result (attention's KV cache).
            self.mutated = {i: a for i, (a, orig) in enumerate(zip(args, self.case.args))
                            if isinstance(a, np.ndarray) and not np.array_equal(a, orig, equal_nan=True)}
            self._done = True
        return self.expected, self.mutated


# -- generating checks ------------------------------------------------------------------------------------------
def checks(registry, names: Iterable[str] | None = None, seed: int = 0) -> list[Check]:
    """Every check of the registered kernels and formats, restricted to plugins or backends ``names`` if given.

    Cases come from a generator seeded by (seed, op), so filtering never changes them."""
    names = None if names is None else set(names)
    if names is not None:
        unknown = names - set(registry.plugins) - set(registry.backends)
        if unknown:
            raise PluginError(f"conformance: no plugin or backend named {', '.join(sorted(unknown))}; known: "
                              f"{', '.join(sorted(set(registry.plugins) | set(registry.backends)))}")
    formats = sorted(registry.formats.values(), key=lambda f: f.name)
    kernels = sorted(registry.kernels, key=lambda k: (k.op, k.backend, k.name))
    found = [Check("plugin", "load", failed=p) for p in registry.failed() if names is None or p.name in names]
    for op in ops.OP_NAMES:
        of_op = [k for k in kernels if k.op == op]
        if not of_op:
            continue
        rng = np.random.default_rng([seed, zlib.crc32(op.encode())])
        cases = list(ops.spec(op).cases(rng, formats))
        for i, case in enumerate(cases):
            label = f"{i}-{case.label}" if case.label else str(i)
            reference = _Reference(op, case)
            case_plugins = {registry.formats[a.fmt].plugin for a in case.args
                            if isinstance(a, Weight) and a.fmt in registry.formats}
            for kernel in of_op:
                if names is None or {kernel.plugin, kernel.backend} & names or case_plugins & names:
                    found.append(Check(op, label, kernel, case, cached=reference))
    for fmt in formats:
        if names is None or fmt.plugin in names:
            found.append(Check("format", "layout", fmt=fmt))
    return found


# -- running one check ------------------------------------------------------------------------------------------
def run_check(check: Check, registry, seed: int = 0) -> Result:
    if check.failed:
        plugin = check.failed
        return Result(check.name, FAIL, f"plugin {plugin.name!r} failed to load: {plugin.error}", plugin.name, "",
                      "plugin", seed)
    if check.kernel is None:
        message = _format_problem(check.fmt, np.random.default_rng([seed, check.fmt.ggml_type]))
        return Result(check.name, FAIL if message else PASS, message or "ok", check.fmt.plugin, "", "format", seed)
    kernel, case = check.kernel, check.case

    def result(status: str, message: str) -> Result:
        return Result(check.name, status, message, kernel.plugin, kernel.backend, kernel.op, seed)

    backend = registry.backends.get(kernel.backend)
    if backend is None:
        return result(FAIL, f"{kernel.name} is registered for backend {kernel.backend!r}, which no plugin provides")
    try:
        available = backend.available()
    except Exception as exc:
        return result(FAIL, f"backend {backend.name!r}: available() raised {describe_error(exc)}; it must answer "
                            f"with a Verdict")
    if not available:
        return result(SKIP, f"backend {backend.name!r} is not available here: "
                            f"{getattr(available, 'reason', '') or repr(available)}")
    logical = ops.signature(kernel.op, case.args, case.params)
    try:
        args = tuple(_to_backend(backend, a, registry) for a in case.args)
    except Exception as exc:
        return result(FAIL, f"moving {logical} onto backend {backend.name!r} raised {describe_error(exc)}")
    # The kernel is asked about the call as it receives it: weights as this backend's upload left them (a format's
    # repacker may have given them a layout of this backend's own); arrays described by their host copies.
    sig = ops.signature(kernel.op, tuple(d if isinstance(d, Weight) else h for h, d in zip(case.args, args)),
                        case.params)
    verdict = kernel.check(sig)
    if not isinstance(verdict, Verdict):
        return result(FAIL, not_a_verdict(kernel, verdict))
    if not verdict:
        return result(SKIP, f"{kernel.name} does not support {sig}: {verdict.reason}")
    try:
        expected, mutated = check.cached.get()
    except Exception as exc:
        return result(FAIL, f"the reference failed on {logical}: {describe_error(exc)}")
    try:
        out = kernel.fn(*args, **case.params)
        backend.synchronize()
        actual = np.asarray(backend.to_host(out))
        written = {i: np.asarray(backend.to_host(args[i])) for i in mutated}
    except Exception as exc:
        return result(FAIL, f"{kernel.name} raised on {sig}: {describe_error(exc)}")
    tolerance = case.tolerance or ops.spec(kernel.op).tolerance
    problems = [p for p in [compare(actual, expected, tolerance)] if p]
    problems += [f"argument {i} (written in place): {p}" for i, value in written.items()
                 if (p := compare(value, mutated[i], tolerance))]
    if problems:
        return result(FAIL, f"{kernel.name} on {sig}: {'; '.join(problems)}")
    return result(PASS, "ok")


def compare(actual: np.ndarray, expected: np.ndarray, tolerance: Tolerance) -> str:
    """'' when ``actual`` matches ``expected`` under ``tolerance``, else what is wrong. NaN never passes."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        return f"shape {actual.shape}, expected {expected.shape}"
    if actual.dtype != expected.dtype:
        return f"dtype {actual.dtype}, expected {expected.dtype}"
    if actual.dtype.kind == "f":
        bad = ~np.isfinite(actual) & np.isfinite(expected)
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            return f"{int(bad.sum())} non-finite values, first at {at}: {actual[at]}"
    if tolerance.exact or tolerance.nmse == 0.0:
        differ = actual != expected
        if actual.dtype.kind == "f":
            differ &= ~(np.isnan(actual) & np.isnan(expected))
        if differ.any():
            at = tuple(int(i) for i in np.argwhere(differ)[0])
            return (f"{int(differ.sum())} of {actual.size} values differ, first at {at}: "
                    f"got {actual[at]!r}, expected {expected[at]!r}")
        return ""
    err = ops.nmse(actual, expected)
    if not err <= tolerance.nmse:  # also catches a NaN error
        return f"normalized MSE {err:.3g} exceeds {tolerance.nmse:g}"
    return ""


def _format_problem(fmt: QuantFormat, rng: np.random.Generator) -> str:
    rows, blocks = 3, 2
    try:
        raw = np.asarray(fmt.random_blocks(rng, rows * blocks))
        if raw.dtype != np.uint8 or raw.shape != (rows * blocks, fmt.type_size):
            return f"random_blocks gave {raw.dtype}{list(raw.shape)}, expected uint8[{rows * blocks}, {fmt.type_size}]"
        values = np.asarray(fmt.dequantize(raw.reshape(rows, blocks * fmt.type_size)))
        if values.dtype != np.float32 or values.shape != (rows, blocks * fmt.block_size):
            return f"dequantize gave {values.dtype}{list(values.shape)}, expected float32[{rows}, {blocks * fmt.block_size}]"
        if not np.isfinite(values).all():
            return "dequantize of random_blocks gave non-finite values"
        if fmt.quantize is not None:
            packed = np.asarray(fmt.quantize(values))
            if packed.dtype != np.uint8 or packed.shape != (rows, blocks * fmt.type_size):
                return f"quantize gave {packed.dtype}{list(packed.shape)}, expected uint8[{rows}, {blocks * fmt.type_size}]"
            if not np.isfinite(fmt.dequantize(packed)).all():
                return "dequantize(quantize(x)) gave non-finite values"
    except Exception as exc:
        return f"format {fmt.name} raised: {describe_error(exc)}"
    return ""


def _host_copy(value: Any) -> Any:
    return np.array(value, copy=True) if isinstance(value, np.ndarray) else value


def _to_backend(backend, value: Any, registry) -> Any:
    if isinstance(value, np.ndarray):
        return backend.from_host(np.array(value, copy=True))
    if isinstance(value, Weight):
        return backend.upload_weight(value)
    return value


def run_conformance(registry=None, *, plugin: str | Iterable[str] | None = None,
                    backend: str | Iterable[str] | None = None, seed: int = 0) -> list[Result]:
    """Run the kit without pytest; ``plugin``/``backend`` restrict it as ``--rocmforge-conformance=NAMES``."""
    registry = registry or get_registry()
    names = [n for group in (plugin, backend) if group for n in ([group] if isinstance(group, str) else group)]
    with registry_in_use(registry):
        return [run_check(c, registry, seed) for c in checks(registry, names or None, seed)]


# -- the pytest plugin ------------------------------------------------------------------------------------------
MARKER = "rocmforge_conformance"


def pytest_addoption(parser):
    group = parser.getgroup("rocmforge", "rocmforge conformance kit")
    group.addoption("--rocmforge-conformance", nargs="?", const="", default=None, metavar="NAMES",
                    help="check every registered kernel (or those of the comma-separated plugins/backends NAMES) "
                         "against the numpy references")
    group.addoption("--rocmforge-seed", type=int, default=None, metavar="N",
                    help="seed of the conformance cases (default: a fresh one, printed in the header)")


def _enabled(config) -> bool:
    return config.getoption("--rocmforge-conformance", None) is not None


def pytest_configure(config):
    config.addinivalue_line("markers", f"{MARKER}: a check generated by the rocmforge conformance kit")
    if not _enabled(config):
        return
    config.addinivalue_line("markers", "gpu: needs a GPU runtime and device (the kit's checks of device backends)")
    seed = config.getoption("--rocmforge-seed")
    config._rocmforge_seed = int.from_bytes(os.urandom(4), "little") if seed is None else seed
    if "s" not in config.option.reportchars and "a" not in config.option.reportchars:
        config.option.reportchars += "s"  # every skip says why: show the reasons


def pytest_report_header(config):
    if _enabled(config):
        return f"rocmforge conformance: seed {config._rocmforge_seed} (reproduce with --rocmforge-seed={config._rocmforge_seed})"


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m/-k selection, which then applies to the kit's items too
def pytest_collection_modifyitems(session, config, items):
    if not _enabled(config):
        return
    registry = get_registry()
    value = config.getoption("--rocmforge-conformance")
    names = [n.strip() for n in value.split(",") if n.strip()] or None
    try:
        found = checks(registry, names, config._rocmforge_seed)
    except PluginError as exc:
        raise pytest.UsageError(str(exc)) from None
    parent = ConformanceCollector.from_parent(session, name="rocmforge-conformance", nodeid="rocmforge-conformance")
    kit = [ConformanceItem.from_parent(parent, name=c.name, check=c, registry=registry) for c in found]
    for item in kit:
        item.add_marker(MARKER)
        backend = registry.backends.get(item.check.kernel.backend) if item.check.kernel else None
        if backend is not None and not backend.is_host:
            item.add_marker("gpu")  # device checks run where `pytest -m gpu` runs
    items.extend(kit)


class ConformanceCollector(pytest.Collector):
    def collect(self):
        return []


class ConformanceFailure(Exception):
    pass


class ConformanceItem(pytest.Item):
    def __init__(self, *, check: Check, registry, **kwargs):
        super().__init__(**kwargs)
        self.check, self.registry = check, registry

    def runtest(self):
        seed = self.config._rocmforge_seed
        with registry_in_use(self.registry):
            result = run_check(self.check, self.registry, seed)
        if result.status == SKIP:
            pytest.skip(result.message)
        if result.status == FAIL:
            raise ConformanceFailure(f"{result.message} (seed {seed}: reproduce with --rocmforge-seed={seed})")

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, ConformanceFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"rocmforge conformance: {self.name}"
