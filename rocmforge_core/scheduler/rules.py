"""Profile rules: conditions on a call site (op, name regex, layer range, quant format, phase) that name the
backends to use, each remembering where it was written (file:line) so ``explain`` can cite it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rocmforge_core.program import Site


@dataclass(frozen=True)
class Rule:
    backends: tuple[str, ...]
    where: str                               # "profile.yaml:12", shown by explain
    line: int = 0
    ops: frozenset[str] | None = None
    name: re.Pattern | None = None
    layers: tuple[int, int] | None = None    # inclusive
    formats: frozenset[str] | None = None    # upper case
    phase: str | None = None
    why: str = ""

    def matches(self, site: Site) -> bool:
        if self.ops is not None and site.op not in self.ops:
            return False
        if self.phase is not None and site.phase != self.phase:
            return False
        if self.layers is not None:
            layer = site.layer
            if layer is None or not self.layers[0] <= layer <= self.layers[1]:
                return False
        if self.formats is not None:
            fmt = site.fmt
            if fmt is None or fmt.upper() not in self.formats:
                return False
        return self.name is None or self.name.search(site.name) is not None

    def covers(self, other: "Rule") -> bool:
        """Whether every site ``other`` matches is matched by this rule too, judged from the conditions alone
        (sound, not complete: two different regexes are never compared)."""
        def subset(mine, theirs):
            return mine is None or (theirs is not None and theirs <= mine)
        if not (subset(self.ops, other.ops) and subset(self.formats, other.formats)):
            return False
        if self.phase is not None and self.phase != other.phase:
            return False
        if self.layers is not None and (other.layers is None or not (
                self.layers[0] <= other.layers[0] and other.layers[1] <= self.layers[1])):
            return False
        return self.name is None or (other.name is not None and self.name.pattern == other.name.pattern)

    def describe(self) -> str:
        parts = []
        if self.ops is not None:
            parts.append("op " + "|".join(sorted(self.ops)))
        if self.name is not None:
            parts.append(f"name /{self.name.pattern}/")
        if self.layers is not None:
            parts.append(f"layers {self.layers[0]}-{self.layers[1]}")
        if self.formats is not None:
            parts.append("format " + "|".join(sorted(self.formats)))
        if self.phase is not None:
            parts.append(self.phase)
        return f"rule ({', '.join(parts) or 'every site'}) -> {', '.join(self.backends)}"


@dataclass(frozen=True)
class Origin:
    """Where a site's backends came from: a rule, a per-op choice, the offload shortcut, the default, or the
    command line."""
    backends: tuple[str, ...]
    kind: str          # rule | op | offload | default | option
    where: str = ""    # file:line, or the option that set it
    why: str = ""

    def describe(self) -> str:
        source = f" ({self.where})" if self.where else ""
        why = f": {self.why}" if self.why else ""
        return f"{self.kind}{source} -> {', '.join(self.backends)}{why}"
