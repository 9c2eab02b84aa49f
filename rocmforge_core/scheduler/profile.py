"""YAML profiles: which backend runs which call site.

A profile is validated against the published JSON Schema (profile_schema.json, rendered to
docs/PROFILE-REFERENCE.md), then against what is installed (backend and format names) and what Python accepts
(regexes). Every problem carries its file and line: the YAML is composed into a node tree first, and each JSON
path the validator reports is walked down that tree to the node's start mark.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

from rocmforge_core.errors import ProfileError
from rocmforge_core.ops import OP_NAMES
from rocmforge_core.registry import _hint_for_backend
from rocmforge_core.scheduler.rules import Origin, Rule
from rocmforge_core.program import Site

SCHEMA_PATH = Path(__file__).with_name("profile_schema.json")
AUTO = "auto"
MAX_NODES = 10_000  # values in a profile, aliases expanded: real ones hold a few dozen
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


@cache
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


@dataclass(frozen=True)
class Problem:
    severity: str  # error | warning
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.severity}: {self.message}"


@dataclass
class Profile:
    path: str = "<profile>"
    default: Origin | None = None
    ops: dict[str, Origin] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    gpu_layers: int | None = None
    gpu_memory: int | None = None
    context: int = 4096
    gpu_backend: str = "hip"
    offload_where: str = ""

    @property
    def offloads(self) -> bool:
        return self.gpu_layers is not None or self.gpu_memory is not None

    def first_rule(self, site: Site) -> Rule | None:
        return next((r for r in self.rules if r.matches(site)), None)


def read_profile(path: str | Path) -> str:
    """A profile's text; ProfileError when it cannot be read or is not UTF-8."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ProfileError(f"cannot read profile {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ProfileError(f"profile {path} is not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line} "
                           f"(offset {exc.start})") from None


def load_profile(path: str | Path, registry=None) -> Profile:
    """Read and validate a profile; raises ProfileError naming file and line of every error."""
    profile, problems = parse_profile(read_profile(path), str(path), registry)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise ProfileError("invalid profile: " + "; ".join(map(str, errors)))
    return profile


def parse_profile(text: str, file: str = "<profile>", registry=None) -> tuple[Profile | None, list[Problem]]:
    """The profile (None when it has errors) and every problem found without a model."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            expansion = _expansion_problem(root, file)
            if expansion:
                return None, [expansion]
            data = loader.construct_document(root) if root is not None else {}
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [Problem("error", file, mark.line + 1 if mark else 1, f"not valid YAML: {problem}")]
    except RecursionError:  # the YAML library composes nested collections recursively
        return None, [Problem("error", file, 1, "the profile nests collections too deeply")]
    data = {} if data is None else data
    lines = _LineMap(root, file)
    problems = list(lines.duplicates())
    invalid = set()
    for path, key, msg in _schema_errors(data):
        problems.append(Problem("error", file, lines.line(path, key), msg))
        invalid.add((path + ((key,) if key is not None else ()))[:2])
    if not isinstance(data, dict):
        return None, problems
    profile = Profile(path=file)
    # Build what the schema accepted, so that name and regex errors show up in the same report.
    problems += _build(profile, data, lines, registry, invalid)
    problems.sort(key=lambda p: p.line)
    if any(p.severity == "error" for p in problems):
        return None, problems
    for i, later in enumerate(profile.rules):
        earlier = _first_cover(profile.rules[:i], later)
        if earlier is not None:
            problems.append(Problem("warning", file, later.line, f"{later.describe()} is shadowed by the "
                                    f"{earlier.describe()} at line {earlier.line}: it can never match"))
    return profile, problems


def check_against_sites(profile: Profile, sites: Iterable[Site], model: str) -> list[Problem]:
    """Warnings that need a model: rules that match none of its call sites, or whose every match an earlier rule
    already took (shadowing the static check cannot prove, e.g. through different regexes)."""
    sites = list(sites)
    problems = []
    taken: set[tuple[str, str]] = set()
    for i, rule in enumerate(profile.rules):
        matched = {s.key for s in sites if rule.matches(s)}
        statically = _first_cover(profile.rules[:i], rule) is not None
        if not matched:
            if not statically:
                problems.append(Problem("warning", profile.path, rule.line,
                                        f"{rule.describe()} matches no call site of {model}"))
        elif matched <= taken and not statically:
            problems.append(Problem("warning", profile.path, rule.line,
                                    f"{rule.describe()} is shadowed for {model}: earlier rules take all "
                                    f"{len(matched)} call sites it matches"))
        taken |= matched
    for op, choice in profile.ops.items():
        if not any(s.op == op for s in sites):
            problems.append(Problem("warning", profile.path, _line_of(choice), f"{model} has no {op} call site"))
    return problems


def parse_bytes(value: int | str) -> int:
    if isinstance(value, int):
        return value
    found = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|B)", value.strip())
    return int(float(found.group(1)) * _UNITS[found.group(2).upper()])


# -- validation ------------------------------------------------------------------------------------------------

def _expansion_problem(root: yaml.Node | None, file: str) -> Problem | None:
    """Aliases make the composed tree a graph: refuse one that contains itself (it never ends) or that expands to
    more than MAX_NODES values (a "billion laughs" file), before anything walks it as a tree. One pass over the
    distinct nodes, each expanded size computed once."""
    size: dict[int, int] = {}
    open_: set[int] = set()  # nodes being expanded: the ancestors of the current one
    stack: list[tuple[yaml.Node, bool]] = [(root, False)] if root is not None else []
    while stack:
        node, children_done = stack.pop()
        kids = _children(node)
        if children_done:
            open_.discard(id(node))
            size[id(node)] = 1 + sum(size[id(k)] for k in kids)
            if size[id(node)] > MAX_NODES:
                return Problem("error", file, node.start_mark.line + 1, f"YAML aliases expand the profile to more "
                               f"than {MAX_NODES} values; write it out instead")
            continue
        if id(node) in size:
            continue
        open_.add(id(node))
        stack.append((node, True))
        for kid in kids:
            if id(kid) in open_:
                return Problem("error", file, kid.start_mark.line + 1,
                               "a YAML alias refers to a collection that contains it: the profile would be infinite")
            if id(kid) not in size:
                stack.append((kid, False))
    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _schema_errors(data: Any) -> Iterable[tuple[tuple, str | None, str]]:
    """(json path, offending key or None, message) for each schema violation, deepest cause first."""
    validator = jsonschema.Draft202012Validator(schema())
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        yield from _explain(error)


def _explain(error) -> Iterable[tuple[tuple, str | None, str]]:
    path = tuple(error.absolute_path)
    if error.validator == "oneOf" and error.context:
        # Report the branch that fits the value's type (a list, or a single name), not "valid under none".
        fitting = [e for e in error.context if e.validator != "type"]
        deeper = [e for e in fitting if len(e.absolute_path) > len(path)]
        yield from _explain(jsonschema.exceptions.best_match(deeper or fitting or error.context))
        return
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        for key in sorted(set(error.instance) - set(allowed)):
            yield path, key, f"unknown key {key!r}{_suggest(key, allowed)}; allowed: {', '.join(allowed)}"
        return
    if error.validator == "enum" and error.schema.get("enum") == list(OP_NAMES):
        key = error.instance if "propertyNames" in error.absolute_schema_path else None
        yield path, key, f"unknown op {error.instance!r}{_suggest(str(error.instance), OP_NAMES)}; ops are {', '.join(OP_NAMES)}"
        return
    if error.validator == "not" and path == ():
        yield ("gpu_memory",), "gpu_memory", "gpu_layers and gpu_memory both place whole layers: give only one"
        return
    if error.validator == "pattern" and "[KMGT]" in error.validator_value:
        yield path, None, f"{error.instance!r} is not a size: write an integer of bytes or e.g. '6GiB', '512MiB'"
        return
    where = ".".join(map(str, path)) or "the profile"
    yield path, None, f"{where}: {error.message}"


def _build(profile: Profile, data: dict, lines: "_LineMap", registry, invalid: set[tuple]) -> list[Problem]:
    """Fill ``profile`` from the parts of ``data`` the schema accepted (``invalid`` holds the first two steps of
    each rejected path), checking names against the installed plugins."""
    data = {k: v for k, v in data.items() if (k,) not in invalid}
    if registry is None:
        from rocmforge_core.registry import get_registry
        registry = get_registry()
    file = profile.path
    problems: list[Problem] = []

    def err(path, message, key=None):
        problems.append(Problem("error", file, lines.line(path, key), message))

    def backends(path, value, allow_auto=False) -> tuple[str, ...]:
        names = (value,) if isinstance(value, str) else tuple(value)
        for i, name in enumerate(names):
            if name == AUTO and allow_auto and len(names) == 1:
                continue
            if name not in registry.backends:
                installed = sorted(registry.backends)
                sub = path if isinstance(value, str) else path + (i,)
                err(sub, f"unknown backend {name!r}{_suggest(name, installed)}; installed: "
                         f"{', '.join(installed) or 'none'}{_hint_for_backend(name)}")
        return names

    if "default" in data:
        profile.default = Origin(backends(("default",), data["default"], allow_auto=True), "default",
                                 f"{file}:{lines.line(('default',))}")
    for op, value in data.get("ops", {}).items():
        if ("ops", op) in invalid:
            continue
        profile.ops[op] = Origin(backends(("ops", op), value), "op", f"{file}:{lines.line(('ops', op))}")
    for i, raw in enumerate(data.get("rules", [])):
        path = ("rules", i)
        if path in invalid:
            continue
        line = lines.line(path)
        pattern = None
        if "name" in raw:
            try:
                pattern = re.compile(raw["name"])
            except re.error as exc:
                err(path + ("name",), f"bad regex {raw['name']!r}: {exc}")
        formats = None
        if "format" in raw:
            values = [raw["format"]] if isinstance(raw["format"], str) else raw["format"]
            formats = frozenset(v.upper() for v in values)
            known = {f.upper() for f in registry.formats}
            for j, value in enumerate(values):
                if value.upper() not in known:
                    sub = path + ("format",) + (() if isinstance(raw["format"], str) else (j,))
                    err(sub, f"unknown format {value!r}{_suggest(value.upper(), sorted(known))}; installed formats: "
                             f"{', '.join(sorted(known)) or 'none'}")
        layers = None
        if "layers" in raw:
            value = raw["layers"]
            layers = (value, value) if isinstance(value, int) else (value[0], value[1])
            if layers[0] > layers[1]:
                err(path + ("layers",), f"layer range [{layers[0]}, {layers[1]}] is empty: write [first, last]")
        ops = raw.get("op")
        profile.rules.append(Rule(
            backends=backends(path + ("backend",), raw["backend"]), where=f"{file}:{line}", line=line,
            ops=None if ops is None else frozenset([ops] if isinstance(ops, str) else ops),
            name=pattern, layers=layers, formats=formats, phase=raw.get("phase"), why=raw.get("why", "")))
    if "gpu_backend" in data:
        profile.gpu_backend = backends(("gpu_backend",), data["gpu_backend"])[0]
    elif profile.default and profile.default.backends[0] in registry.backends \
            and not registry.backends[profile.default.backends[0]].is_host:
        profile.gpu_backend = profile.default.backends[0]
    if "gpu_layers" in data:
        profile.gpu_layers = data["gpu_layers"]
        profile.offload_where = f"{file}:{lines.line(('gpu_layers',))}"
    if "gpu_memory" in data:
        profile.gpu_memory = parse_bytes(data["gpu_memory"])
        profile.offload_where = f"{file}:{lines.line(('gpu_memory',))}"
    profile.context = data.get("context", profile.context)
    if profile.offloads and "gpu_backend" not in data and profile.gpu_backend not in registry.backends:
        key = "gpu_layers" if "gpu_layers" in data else "gpu_memory"
        err((key,), f"{key} offloads to backend {profile.gpu_backend!r}, which is not installed"
                    f"{_hint_for_backend(profile.gpu_backend)}; or name another with gpu_backend")
    if profile.offloads and profile.gpu_backend in registry.backends and registry.backends[profile.gpu_backend].is_host:
        key = "gpu_backend" if "gpu_backend" in data else "default"
        err((key,), f"gpu_backend {profile.gpu_backend!r} is a host backend: offloading layers to it means nothing")
    return problems


def _first_cover(earlier: list[Rule], rule: Rule) -> Rule | None:
    return next((e for e in earlier if e.covers(rule)), None)


def _line_of(choice: Origin) -> int:
    return int(choice.where.rsplit(":", 1)[1])


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _LineMap:
    """JSON paths -> 1-based line numbers, through the composed YAML node tree."""

    def __init__(self, root: yaml.Node | None, file: str):
        self.root = root
        self.file = file

    def line(self, path: tuple, key: str | None = None) -> int:
        node = self.root
        if node is None:
            return 1
        for part in path:
            child = self._child(node, part)
            if child is None:
                break
            node = child[1]
        if key is not None and isinstance(node, yaml.MappingNode):
            for k, _ in node.value:
                if k.value == key:
                    return k.start_mark.line + 1
        return node.start_mark.line + 1

    @staticmethod
    def _child(node, part):
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    return k, v
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            return None, node.value[part]
        return None

    def duplicates(self) -> Iterable[Problem]:
        stack = [self.root] if self.root is not None else []
        while stack:
            node = stack.pop()
            if isinstance(node, yaml.MappingNode):
                seen: dict[str, int] = {}
                for k, v in node.value:
                    line = k.start_mark.line + 1
                    if isinstance(k, yaml.ScalarNode) and k.value in seen:
                        yield Problem("error", self.file, line,
                                      f"key {k.value!r} repeats the one at line {seen[k.value]}")
                    seen.setdefault(k.value, line)
                    stack.append(v)
            elif isinstance(node, yaml.SequenceNode):
                stack.extend(node.value)
