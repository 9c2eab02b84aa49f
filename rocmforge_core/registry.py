"""The plugin registry: finds plugins through the ``rocmforge`` entry-point group and records what they provide.

Built-in plugins (the core's reference backend and architectures, cpu_simd, rocm_hip, the formats) load through
the same entry points as third-party ones. Each plugin's hooks are called on their own, inside a guard: a plugin
that fails to import or to register is recorded with its error and everything else goes on.
``ROCMFORGE_PLUGINS=a,b`` limits loading to the named entry points.
"""

from __future__ import annotations

import contextlib
import os
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Iterator

import pluggy

from rocmforge_core import hookspecs
from rocmforge_core.errors import PluginError, UnsupportedError
from rocmforge_core.ops import Kernel, Signature, Verdict

ENTRY_POINT_GROUP = "rocmforge"
HOOKS = ("register_backends", "register_kernels", "register_formats", "register_architectures")


@dataclass
class PluginRecord:
    name: str
    distribution: str
    version: str
    module: str
    error: str = ""
    provides: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class Candidate:
    kernel: Kernel
    verdict: Verdict


class Registry:
    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("rocmforge")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginRecord] = {}
        self.backends: dict[str, Any] = {}
        self.kernels: list[Kernel] = []
        self.formats: dict[str, Any] = {}        # GGUF type name -> QuantFormat
        self.architectures: dict[str, Any] = {}  # general.architecture -> Architecture

    # -- loading ---------------------------------------------------------------------------------------------
    def load_entry_points(self, only: list[str] | None = None) -> None:
        found = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP),
                       key=lambda e: (e.name, e.dist.name if e.dist else ""))
        for name in sorted(set(only or ()) - {ep.name for ep in found}):  # a typo in ROCMFORGE_PLUGINS shows up
            self.plugins[name] = PluginRecord(name, "?", "?", "", error=f"ROCMFORGE_PLUGINS names {name!r}, but no "
                                              f"installed distribution has a {ENTRY_POINT_GROUP!r} entry point of that name")
        for ep in found:
            if only is not None and ep.name not in only:
                continue
            dist = ep.dist
            record = PluginRecord(ep.name, dist.name if dist else "?", dist.version if dist else "?", ep.value)
            if ep.name in self.plugins:  # two distributions claim one name: keep the first, list the second
                other = self.plugins[ep.name].distribution
                record.name = f"{ep.name} ({record.distribution})"
                record.error = f"entry point name {ep.name!r} is already used by distribution {other!r}"
                self.plugins[record.name] = record
                continue
            try:
                module = ep.load()
            except Exception as exc:
                record.error = describe_error(exc)
                self.plugins[ep.name] = record
                continue
            self.add_plugin(module, record)

    def add_plugin(self, obj: Any, record: PluginRecord) -> PluginRecord:
        """Register one plugin object (a module or any object with hook implementations) and run its hooks."""
        if record.name in self.plugins and self.plugins[record.name].ok:
            raise PluginError(f"a plugin named {record.name!r} is already registered")
        self.plugins[record.name] = record
        try:
            self.pm.register(obj, name=record.name)
        except Exception as exc:
            record.error = describe_error(exc)
            return record
        for hook in HOOKS:
            impls = [i for i in getattr(self.pm.hook, hook).get_hookimpls() if i.plugin_name == record.name]
            for impl in impls:
                staged: list[tuple[str, Any]] = []
                try:
                    impl.function(lambda item, _h=hook: staged.append((_h, item)))
                    for h, item in staged:
                        self._accept(h, item, record)
                except Exception as exc:
                    # All or nothing: a half-registered plugin (a backend without its kernels) is worse than none.
                    self._withdraw(record.name)
                    record.error = f"{hook}: {describe_error(exc)}"
                    record.provides = {}
                    return record
        return record

    def remove_plugin(self, name: str) -> None:
        self._withdraw(name)
        self.plugins.pop(name, None)

    def _withdraw(self, name: str) -> None:
        """Unregister plugin ``name`` and drop everything it provided (its record stays)."""
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)
        self.kernels = [k for k in self.kernels if k.plugin != name]
        for table in (self.backends, self.formats, self.architectures):
            for key in [k for k, v in table.items() if getattr(v, "plugin", None) == name]:
                del table[key]

    def _accept(self, hook: str, item: Any, record: PluginRecord) -> None:
        kind = hook.removeprefix("register_")
        if hook == "register_kernels":
            if not isinstance(item, Kernel):
                raise PluginError(f"register_kernels got {type(item).__name__}, not a Kernel")
            item.plugin = record.name
            self.kernels.append(item)
            key = item.name
        else:
            table = {"register_backends": self.backends, "register_formats": self.formats,
                     "register_architectures": self.architectures}[hook]
            key = item.name
            if key in table:
                raise PluginError(f"{kind[:-1]} {key!r} is already provided by plugin {table[key].plugin!r}")
            item.plugin = record.name
            table[key] = item
        record.provides.setdefault(kind, []).append(key)

    # -- queries ---------------------------------------------------------------------------------------------
    def backend(self, name: str):
        if name not in self.backends:
            raise PluginError(f"no backend named {name!r} is installed; installed: {', '.join(sorted(self.backends)) or 'none'}"
                              + _hint_for_backend(name))
        return self.backends[name]

    def format(self, name: str):
        if name not in self.formats:
            raise UnsupportedError(f"tensor type {name} is not provided by any installed plugin; "
                                   f"install rocmforge-format-{name.lower().replace('_', '-')}")
        return self.formats[name]

    def format_by_type(self, ggml_type: int):
        for fmt in self.formats.values():
            if fmt.ggml_type == ggml_type:
                return fmt
        return None

    def architecture(self, name: str):
        if name not in self.architectures:
            raise UnsupportedError(f"model architecture {name!r} is not provided by any installed plugin; "
                                   f"installed: {', '.join(sorted(self.architectures)) or 'none'}")
        return self.architectures[name]

    def kernels_for(self, sig: Signature, backend: str | None = None) -> list[Candidate]:
        """Every kernel of ``sig.op`` (on ``backend`` if given) with its verdict, capable ones first, then by
        priority (higher first), backend name, kernel name and plugin name: deterministic, independent of load
        order."""
        found = [Candidate(k, k.check(sig)) for k in self.kernels
                 if k.op == sig.op and (backend is None or k.backend == backend)]
        return sorted(found, key=lambda c: (not c.verdict.ok, -c.kernel.priority, c.kernel.backend, c.kernel.name,
                                            c.kernel.plugin))


def describe_error(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _hint_for_backend(name: str) -> str:
    hints = {"cpu": "rocmforge-cpu-simd", "hip": "rocmforge-rocm-hip"}
    return f"; pip install {hints[name]}" if name in hints else ""


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded from entry points on first use (honours ROCMFORGE_PLUGINS)."""
    global _REGISTRY
    if _REGISTRY is None:
        only = os.environ.get("ROCMFORGE_PLUGINS")
        registry = Registry()
        registry.load_entry_points([n.strip() for n in only.split(",") if n.strip()] if only else None)
        _REGISTRY = registry
    return _REGISTRY


def reset_registry(registry: Registry | None = None) -> None:
    """Drop (or replace) the process-wide registry; tests use it to load a different plugin set."""
    global _REGISTRY
    _REGISTRY = registry


@contextlib.contextmanager
def registry_in_use(registry: Registry) -> Iterator[Registry]:
    """Make ``registry`` the process-wide one inside the block (host weights find their formats through it), then
    put the previous one back: how tests and the conformance kit run against a registry of their own."""
    global _REGISTRY
    previous, _REGISTRY = _REGISTRY, registry
    try:
        yield registry
    finally:
        _REGISTRY = previous

