"""Measured tuning: time every capable kernel for each (op, shape bucket, format, phase) of a model on this
machine, and the copies between backends, and keep the results for the scheduler.

The cache is one JSON file per device fingerprint (each available backend's devices: name, arch, memory, and
what the backend reports in ``DeviceInfo.extra``, such as driver and runtime versions), in
``$ROCMFORGE_CACHE_DIR/tune`` or ``~/.cache/rocmforge/tune``. Each measurement records the plugin (and its version)
whose kernel it timed; the scheduler ignores measurements whose plugin version changed since, and explain says
so, until ``rocmforge tune`` runs again. Without a cache everything is estimated (costs.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rocmforge_core import __version__, ops
from rocmforge_core.ops import sample
from rocmforge_core.ops import Kernel, signature
from rocmforge_core.ops.attention import NOMINAL_CONTEXT
from rocmforge_core.program import Site
from rocmforge_core.scheduler.sites import availability

CACHE_VERSION = 2  # 2: the sample op's batched signature, state arguments left out of buckets
COPY_SIZES = (4 << 10, 256 << 10, 4 << 20)


def cache_dir() -> Path:
    root = os.environ.get("ROCMFORGE_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rocmforge"
    return Path(root) / "tune"


def fingerprint(registry) -> dict:
    """What makes timings comparable: the devices of every available backend and their drivers."""
    devices = {}
    for name in sorted(registry.backends):
        be = registry.backends[name]
        if not availability(be):
            continue
        try:
            infos = be.devices()
        except Exception as exc:  # a backend that cannot list devices is fingerprinted by its failure
            infos, devices[name] = [], f"devices() failed: {type(exc).__name__}"
        if infos:
            devices[name] = [{"name": d.name, "arch": d.arch, "memory": d.memory_bytes, "units": d.compute_units,
                              **{k: str(v) for k, v in sorted(d.extra.items())}} for d in infos]
    return {"machine": platform.machine(), "python": platform.python_version(), "numpy": np.__version__,
            "devices": devices}


def fingerprint_id(fp: dict) -> str:
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]


def bucket(site: Site) -> str:
    """(op, shape bucket, format, phase) of a site: batch sizes round up to a power of two, other dimensions and
    the weight's shape stay exact; state arguments (the KV cache: sized by the run, not the model) are left out."""
    shapes = []
    state = ops.spec(site.op).state
    for i, a in enumerate(site.sig.args):
        if i in state:
            continue
        shape = list(a.shape)
        if shape and not a.dtype[:1].isupper() and site.op != "sample":
            shape[0] = 1 << (shape[0] - 1).bit_length()
        shapes.append("x".join(map(str, shape)))
    return f"{site.op} {site.fmt or '-'} {site.phase} {','.join(shapes)}"


@dataclass
class TuningCache:
    path: Path
    fingerprint: dict
    entries: dict[str, dict] = field(default_factory=dict)   # "kernel|bucket" -> {seconds, plugin, version}
    copies: dict[str, dict] = field(default_factory=dict)    # "src->dst" -> {latency_s, bytes_per_s, versions}
    registry: object = None
    stale: set[str] = field(default_factory=set)             # "plugin old -> new" seen while looking up

    @classmethod
    def for_registry(cls, registry, directory: Path | None = None) -> "TuningCache":
        fp = fingerprint(registry)
        path = (directory or cache_dir()) / f"{fingerprint_id(fp)}.json"
        cache = cls(path, fp, registry=registry)
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                data = {}
            if data.get("version") == CACHE_VERSION and data.get("fingerprint") == fp:
                cache.entries, cache.copies = data.get("entries", {}), data.get("copies", {})
        return cache

    @property
    def empty(self) -> bool:
        return not self.entries

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": CACHE_VERSION, "rocmforge": __version__, "fingerprint": self.fingerprint,
                                   "entries": self.entries, "copies": self.copies}, indent=1, sort_keys=True))
        tmp.replace(self.path)

    def _version(self, plugin: str) -> str:
        record = self.registry.plugins.get(plugin) if self.registry is not None else None
        return record.version if record else "?"

    def lookup(self, kernel: Kernel, site: Site) -> float | None:
        entry = self.entries.get(f"{kernel.name}|{bucket(site)}")
        if entry is None:
            return None
        current = self._version(kernel.plugin)
        if entry["version"] != current:
            self.stale.add(f"{kernel.plugin} {entry['version']} -> {current}")
            return None
        return entry["seconds"]

    def record(self, kernel: Kernel, site: Site, seconds: float) -> None:
        self.entries[f"{kernel.name}|{bucket(site)}"] = {
            "seconds": seconds, "plugin": kernel.plugin, "version": self._version(kernel.plugin)}

    def copy_seconds(self, source: str, dest: str, nbytes: int) -> float | None:
        total = 0.0
        for pair in _legs(self.registry, source, dest):
            entry = self.copies.get(pair)
            if entry is None or any(self._version(p) != v for p, v in entry["versions"].items()):
                return None
            total += entry["latency_s"] + nbytes / entry["bytes_per_s"]
        return total


def _legs(registry, source: str, dest: str) -> list[str]:
    """Copies go through host memory: device -> host and host -> device legs, named by the device backend."""
    legs = []
    for name, direction in ((source, "to_host"), (dest, "from_host")):
        be = registry.backends.get(name) if registry is not None else None
        if be is not None and not be.is_host:
            legs.append(f"{name}.{direction}")
    return legs


# -- measuring ---------------------------------------------------------------------------------------------------

class Tuner:
    """Times candidates on synthetic inputs of each site's signature (random values, valid random weight blocks,
    a KV cache holding NOMINAL_CONTEXT positions), after one warm-up; the best of several batches, since load
    from other processes only ever adds time."""

    def __init__(self, registry, cache: TuningCache, backends: list[str], repeat: int = 5, seed: int = 0):
        self.registry, self.cache, self.backends, self.repeat = registry, cache, backends, repeat
        self.rng = np.random.default_rng(seed)
        self.failures: list[str] = []

    def tune_sites(self, sites: list[Site], progress=None) -> int:
        seen: dict[str, Site] = {}
        for site in sites:
            seen.setdefault(bucket(site), site)
        timed = 0
        for i, (key, site) in enumerate(sorted(seen.items())):
            if progress:
                progress(i, len(seen), key)
            host_args, params = self.inputs(site)
            for name in self.backends:
                be = self.registry.backend(name)
                try:
                    args = tuple(self._upload(be, a) for a in host_args)
                except Exception as exc:
                    self.failures.append(f"{name} cannot hold the arguments of {key}: {type(exc).__name__}: {exc}")
                    continue
                # Ask the kernels about the call as this backend holds it (weights in its layout).
                resident = signature(site.op, args, dict(site.sig.params))
                for cand in self.registry.kernels_for(resident, name):
                    if not cand.verdict:
                        continue
                    seconds = self.time_kernel(cand.kernel, be, args, params)
                    if seconds is not None:
                        self.cache.record(cand.kernel, site, seconds)
                        timed += 1
        return timed

    def time_kernel(self, kernel: Kernel, be, args: tuple, params: dict) -> float | None:
        """Seconds per call in a stream of calls: ``repeat`` back-to-back calls, one synchronize, best of three
        batches. A device backend queues its launches as a run does, so the per-call sync latency (which a
        captured or pipelined step does not pay) stays out of the figure."""
        try:
            kernel.fn(*args, **params)
            be.synchronize()
            times = []
            for _ in range(3):
                start = time.perf_counter()
                for _ in range(self.repeat):
                    kernel.fn(*args, **params)
                be.synchronize()
                times.append((time.perf_counter() - start) / self.repeat)
        except Exception as exc:  # a failing kernel is not timed; the run-time fallback deals with it
            self.failures.append(f"{kernel.name}: {type(exc).__name__}: {exc}")
            return None
        return min(times)

    def _upload(self, be, value):
        from rocmforge_core.formats import Weight
        if isinstance(value, Weight):
            return be.upload_weight(value)
        return value if be.is_host else be.from_host(value)

    def tune_copies(self) -> None:
        for name in self.backends:
            be = self.registry.backends[name]
            if be.is_host:
                continue
            plugin = be.plugin
            version = self.cache._version(plugin)
            for direction in ("from_host", "to_host"):
                sizes, times = [], []
                for nbytes in COPY_SIZES:
                    host = np.zeros(nbytes // 4, dtype=np.float32)
                    dev = be.from_host(host)
                    op = (lambda: be.from_host(host)) if direction == "from_host" else (lambda: be.to_host(dev))
                    op()
                    be.synchronize()
                    runs = []
                    for _ in range(self.repeat):
                        start = time.perf_counter()
                        op()
                        be.synchronize()
                        runs.append(time.perf_counter() - start)
                    sizes.append(nbytes)
                    times.append(min(runs))
                slope, intercept = np.polyfit(np.array(sizes, float), np.array(times, float), 1)
                self.cache.copies[f"{name}.{direction}"] = {
                    "latency_s": max(float(intercept), 0.0), "bytes_per_s": 1.0 / max(float(slope), 1e-15),
                    "versions": {plugin: version}}

    def inputs(self, site: Site) -> tuple[tuple, dict]:
        """Host arguments and params for one call of the site's signature."""
        sig, rng = site.sig, self.rng
        params = dict(sig.params)
        args = []
        for i, a in enumerate(sig.args):
            if a.dtype[:1].isupper():
                fmt = self.registry.format(a.dtype)
                args.append(fmt.random_weight(rng, site.weight or "w", a.shape))
            elif a.dtype == "i32":
                args.append(np.zeros(a.shape, dtype=np.int32))
            else:
                args.append((rng.standard_normal(a.shape) * 0.5).astype(np.float32))
        if site.op == "embedding":
            rows = sig.args[0].shape[0]
            args[1] = rng.integers(0, rows, sig.args[1].shape).astype(np.int32)
        elif site.op == "rope":
            args[1] = np.arange(sig.args[0].shape[0], dtype=np.int32)
        elif site.op == "sample":  # default sampling, or greedy for a greedy-only call, per row
            (n, vocab), width = sig.args[0].shape, sig.args[1].shape[1]
            greedy = sig.param("candidates", vocab) == 1
            rows = [{**sample.DEFAULTS, "temperature": 0.0 if greedy else sample.DEFAULTS["temperature"],
                     "history": rng.integers(0, vocab, width).tolist()} for _ in range(n)]
            args[1:] = sample.pack(rows, width) + sample.pack_constraints(rows, vocab, sig.args[5].shape[1])
        elif site.op == "attention":
            args[3:] = _attention_state(sig, rng)
        return tuple(args), params


def _attention_state(sig, rng, block: int = 16):
    """k/v caches, block table, seq ids and positions: one sequence with NOMINAL_CONTEXT tokens, the batch last."""
    m, hkv, d, dv = sig.args[0].shape[0], sig.args[1].shape[1], sig.args[1].shape[2], sig.args[2].shape[2]
    ctx = max(NOMINAL_CONTEXT, m)
    n_blocks = -(-ctx // block)
    k_cache = rng.standard_normal((n_blocks + 1, block, hkv, d)).astype(np.float32)
    v_cache = rng.standard_normal((n_blocks + 1, block, hkv, dv)).astype(np.float32)
    tables = np.arange(1, n_blocks + 1, dtype=np.int32)[None, :]
    return [k_cache, v_cache, tables, np.zeros(m, dtype=np.int32), np.arange(ctx - m, ctx, dtype=np.int32)]
