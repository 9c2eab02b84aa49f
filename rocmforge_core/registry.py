"""The plugin registry: finds plugins through the ``rocmforge`` entry-point group and records what they provide.

Built-in plugins (the core's reference backend and architectures, cpu_simd, rocm_hip, the formats) load through
the same entry points as third-party ones. Each plugin's hooks are called on their own, inside a guard: a plugin
that fails to import or to register, or registers something the registry refuses (docs/PLUGINS.md, "What the
registry refuses"), is withdrawn and recorded with its error, and everything else goes on.
``ROCMFORGE_PLUGINS=a,b`` limits loading to the named entry points.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import os
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Iterator

import pluggy

from rocmforge_core import hookspecs
from rocmforge_core.backend import Backend
from rocmforge_core.errors import PluginError, UnsupportedError
from rocmforge_core.formats import QuantFormat
from rocmforge_core.models import Architecture
from rocmforge_core.ops import OP_NAMES, Kernel, Signature, Verdict, no

ENTRY_POINT_GROUP = "rocmforge"
EXPECTED = {"register_backends": Backend, "register_kernels": Kernel, "register_formats": QuantFormat,
            "register_architectures": Architecture}  # what each hook's register callback takes
HOOKS = tuple(EXPECTED)


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
        self._kernel_owners: dict[str, str] = {}  # kernel name -> plugin: kernel names are unique

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
            except (Exception, SystemExit) as exc:  # a module calling sys.exit() on import, too
                record.error = describe_error(exc)
                self.plugins[ep.name] = record
                continue
            self.add_plugin(module, record)

    def add_plugin(self, obj: Any, record: PluginRecord) -> PluginRecord:
        """Register one plugin object (a module or any object with hook implementations) and run its hooks.

        All or nothing: a plugin that fails anywhere (its hooks raise, or it registers something the registry
        refuses) is withdrawn as a whole, since a half-registered plugin (a backend without its kernels) is worse
        than none, and its record keeps the error."""
        if record.name in self.plugins and self.plugins[record.name].ok:
            raise PluginError(f"a plugin named {record.name!r} is already registered")
        self.plugins[record.name] = record
        try:
            self._register(obj, record.name)
            for hook in HOOKS:
                for impl in getattr(self.pm.hook, hook).get_hookimpls():
                    if impl.plugin_name == record.name:
                        for item in _call(hook, impl):
                            self._accept(hook, item, record)
        except (Exception, SystemExit) as exc:  # a plugin calling sys.exit() must not end the process either
            self._withdraw(record.name)
            record.error = str(exc) if isinstance(exc, _Refused) else describe_error(exc)
            record.provides = {}
        return record

    def _register(self, obj: Any, name: str) -> None:
        """pm.register, refusing objects whose hooks could never run as the author meant."""
        if inspect.isclass(obj):
            raise _Refused(f"the plugin object is the class {obj.__name__}; point the entry point at a module or "
                           f"an instance ({obj.__name__}())")
        owner = next((n for n, p in self.pm.list_name_plugin() if p is obj), None)
        if owner is not None:
            raise _Refused(f"the same plugin object is already registered as plugin {owner!r}")
        try:
            self.pm.register(obj, name=name)
        except pluggy.PluginValidationError as exc:  # e.g. a hook taking other arguments than `register`
            raise _Refused(" ".join(str(exc).split())) from None
        callers = self.pm.get_hookcallers(obj) or []
        for caller in callers:  # what pluggy's check_pending() finds, for this plugin: a misspelt hook is never called
            mine = [i for i in caller.get_hookimpls() if i.plugin_name == name]
            if not caller.has_spec() and not all(i.optionalhook for i in mine):
                close = difflib.get_close_matches(caller.name, HOOKS, n=1)
                guess = f" (did you mean {close[0]!r}?)" if close else ""
                raise _Refused(f"implements unknown hook {caller.name!r}{guess}; the hooks are {', '.join(HOOKS)}")
        implemented = {c.name for c in callers}
        for hook in HOOKS:
            if hook not in implemented and callable(getattr(obj, hook, None)):
                raise _Refused(f"{hook} is not marked as a hook implementation, so it would never be called: "
                               f"decorate it with @hookimpl (from rocmforge_core.hookspecs import hookimpl)")
        if not callers:
            raise _Refused(f"implements none of the hooks {', '.join(HOOKS)}: decorate them with @hookimpl "
                           f"(from rocmforge_core.hookspecs import hookimpl)")

    def remove_plugin(self, name: str) -> None:
        self._withdraw(name)
        self.plugins.pop(name, None)

    def _withdraw(self, name: str) -> None:
        """Unregister plugin ``name`` and drop everything it provided (its record stays)."""
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)
        self.kernels = [k for k in self.kernels if k.plugin != name]
        self._kernel_owners = {k.name: k.plugin for k in self.kernels}
        for table in (self.backends, self.formats, self.architectures):
            for key in [k for k, v in table.items() if getattr(v, "plugin", None) == name]:
                del table[key]

    def _accept(self, hook: str, item: Any, record: PluginRecord) -> None:
        problem = _wrong_type(hook, item) or _invalid(item) or self._taken(item)
        if problem:
            raise _Refused(f"{hook}: {problem}")
        item.plugin = record.name
        if isinstance(item, Kernel):
            self.kernels.append(item)
            self._kernel_owners[item.name] = record.name
        else:
            self._table(item)[item.name] = item
        record.provides.setdefault(hook.removeprefix("register_"), []).append(item.name)

    def _table(self, item: Any) -> dict[str, Any]:
        return self.backends if isinstance(item, Backend) else self.formats if isinstance(item, QuantFormat) \
            else self.architectures

    def _taken(self, item: Any) -> str:
        """Why ``item``'s name (or a format's GGUF type number) is not free, or ''."""
        kind = _kind(item)
        if isinstance(item, Kernel):
            owner = self._kernel_owners.get(item.name)
        else:
            owner = getattr(self._table(item).get(item.name), "plugin", None)
        if owner is not None:
            return f"{kind} {item.name!r} is already provided by plugin {owner!r}"
        if isinstance(item, QuantFormat):
            other = self.format_by_type(item.ggml_type)
            if other is not None:
                return (f"format {item.name} has ggml type {item.ggml_type}, which format {other.name} of plugin "
                        f"{other.plugin!r} already has")
        return ""

    # -- queries ---------------------------------------------------------------------------------------------
    def failed(self) -> list[PluginRecord]:
        """The plugins that failed to load or register, by name."""
        return sorted((p for p in self.plugins.values() if not p.ok), key=lambda p: p.name)

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

    def fallbacks(self) -> tuple[str, ...]:
        """The host backends, which any placement may fall back on: fast ones first (by name), the oracle last."""
        host = [n for n, b in self.backends.items() if b.is_host]
        return tuple(sorted(host, key=lambda n: (self.backends[n].oracle, n)))

    def kernels_for(self, sig: Signature, backend: str | None = None) -> list[Candidate]:
        """Every kernel of ``sig.op`` (on ``backend`` if given) with its verdict, capable ones first, then by
        priority (higher first), backend name and kernel name (unique): deterministic, independent of load
        order."""
        found = [Candidate(k, verdict(k, sig)) for k in self.kernels
                 if k.op == sig.op and (backend is None or k.backend == backend)]
        return sorted(found, key=lambda c: (not c.verdict.ok, -c.kernel.priority, c.kernel.backend, c.kernel.name))


def verdict(kernel: Kernel, sig: Signature) -> Verdict:
    """``kernel.check(sig)``, with an answer that is not a ``Verdict`` (a plugin's ``supports`` returning True or a
    string) turned into a no that says so, so that planning and listings can rely on ``.ok`` and ``.reason``."""
    answer = kernel.check(sig)
    return answer if isinstance(answer, Verdict) else no(not_a_verdict(kernel, answer))


def not_a_verdict(kernel: Kernel, answer: Any) -> str:
    return (f"{kernel.name}: supports() returned {_describe(answer)}, not a Verdict "
            f"(answer with rocmforge_core.ops.yes/no)")


class _Refused(Exception):
    """Why the registry refuses a plugin, as a finished sentence (shown without exception type or location)."""


def _call(hook: str, impl) -> list[Any]:
    """Run one hook implementation with a ``register`` callback; what it registered, in order."""
    if "register" not in impl.argnames:
        raise _Refused(f"{hook} takes no 'register' argument; define it as def {hook}(register)")
    staged: list[tuple] = []
    try:
        returned = impl.function(lambda *items, **extra: staged.append(items + tuple(extra.values())))
    except (Exception, SystemExit) as exc:
        raise _Refused(f"{hook}: {describe_error(exc)}") from exc
    if returned is not None:  # `return [kernel, ...]` or `yield kernel` would register nothing, silently
        raise _Refused(f"{hook} returned {_describe(returned)} instead of calling register(item) once per item")
    for items in staged:
        if len(items) != 1:
            raise _Refused(f"{hook}: register takes one item per call, got {len(items)} arguments")
    return [items[0] for items in staged]


def _kind(item: Any) -> str:
    return next(hook.removeprefix("register_")[:-1] for hook, cls in EXPECTED.items() if isinstance(item, cls))


def _wrong_type(hook: str, item: Any) -> str:
    expected = EXPECTED[hook]
    what = f"a {expected.__module__}.{expected.__name__} instance"
    if isinstance(item, expected):
        return ""
    if inspect.isclass(item):
        if issubclass(item, expected):
            return f"got the class {item.__name__}; register an instance: register({item.__name__}())"
        return f"got the class {item.__name__}; expected {what}"
    if isinstance(item, (list, tuple, set)):
        return f"got {_describe(item)}; call register once per item, with {what}"
    return f"got {_describe(item)}; expected {what}"


def _invalid(item: Any) -> str:
    """What is wrong with a well-typed item that would break planning, loading models or listings later, or ''."""
    kind = _kind(item)
    if not _is_name(item.name):
        return (f"{kind} {type(item).__name__} has no name: set its name attribute (a non-empty string), "
                f"got {item.name!r}")
    if isinstance(item, Kernel) and item.op not in OP_NAMES:
        return f"kernel {item.name!r} implements unknown op {item.op!r}; the ops are {', '.join(OP_NAMES)}"
    for attr, valid, expected in _RULES.get(kind, ()):
        if not valid(getattr(item, attr)):
            return f"{kind} {item.name!r}: {attr} must be {expected}, got {_describe(getattr(item, attr))}"
    return ""


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _is_count(least: int):
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and value >= least


_BY_BACKEND = (lambda value: isinstance(value, dict), "a dict keyed by backend name")
_RULES = {  # (attribute, test, what it must be) per kind of item
    "kernel": (("backend", _is_name, "a backend name"), ("fn", callable, "callable"),
               ("supports", callable, "callable")),
    "format": (("ggml_type", _is_count(0), "an integer >= 0"), ("block_size", _is_count(1), "an integer >= 1"),
               ("type_size", _is_count(1), "an integer >= 1"), ("dequantize", callable, "callable"),
               ("random_blocks", callable, "callable"),
               ("quantize", lambda value: value is None or callable(value), "callable or None"),
               ("kernel_sources", *_BY_BACKEND), ("repackers", *_BY_BACKEND)),
}


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def describe_error(exc: BaseException) -> str:
    """One line: the exception's type, message (newlines folded: errors are shown in tables and warning lines) and
    where it was raised."""
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}{where}"


def _hint_for_backend(name: str) -> str:
    hints = {"cpu": "'rocmforge[cpu]'", "hip": "'rocmforge[hip]'"}
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

