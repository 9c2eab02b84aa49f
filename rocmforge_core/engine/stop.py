"""Stop strings for streamed text: text that could be the start of a stop string is held back until it either
completes the stop string (generation ends, the stop string is not emitted) or cannot (it is released)."""

from __future__ import annotations


class StopStrings:
    def __init__(self, stops):
        self.stops = [s for s in stops if s]
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Text safe to emit now; sets ``stopped`` when a stop string appears."""
        if self.stopped:
            return ""
        if not self.stops:  # nothing to hold back (``_held`` stays empty)
            return text
        pending = self._held + text
        hits = [i for i in (pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped, self._held = True, ""
            return pending[:min(hits)]
        keep = max((k for s in self.stops for k in range(min(len(s) - 1, len(pending)), 0, -1)
                    if s.startswith(pending[-k:])), default=0)
        self._held = pending[len(pending) - keep:] if keep else ""
        return pending[:len(pending) - keep]

    def flush(self) -> str:
        """The held-back text, at the end of generation."""
        held, self._held = self._held, ""
        return "" if self.stopped else held
