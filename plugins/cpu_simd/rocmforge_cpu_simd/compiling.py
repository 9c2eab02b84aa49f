"""What numba's compiling costs a run, and compiling ahead of it.

numba compiles a kernel for each new argument-type signature on first use and caches the machine code on disk
(jit.py), so only a process that meets a signature no earlier one met pays: seconds per kernel. This module
watches numba's compile events (fired only on a cache miss) to

* count the wall seconds spent compiling (``seconds()``), which the engine reports apart from prefill and decode;
* print one line on stderr, whatever stderr is, once a compilation has taken NOTICE_AFTER_S: a first run that
  sits silent for tens of seconds looks hung;

and keeps every serial/parallel pair of builds (jit.serial_and_parallel) so that ``compile_twins`` can compile
each build for the signatures its twin met: ``threads.run`` picks between the two while decoding, so a run that
has only met the serial build would compile the parallel one mid-generation.
"""

from __future__ import annotations

import sys
import threading
import time

from numba.core import event

NOTICE_AFTER_S = 1.0
NOTICE = ("rocmforge: compiling cpu kernels for this machine (once: they are cached for later runs; "
          "`rocmforge warmup` compiles them ahead)...")

_pairs: list[dict] = []


def register_pair(builds: dict) -> dict:
    _pairs.append(builds)
    return builds


def compile_twins() -> int:
    """Compile each serial/parallel build for every signature its twin has been compiled or loaded for in this
    process; returns the number of compilations (cache loads included)."""
    done = 0
    for builds in _pairs:
        wanted = {tuple(sig) for build in builds.values() for sig in build.signatures}
        for build in builds.values():
            for sig in wanted - {tuple(s) for s in build.signatures}:
                build.compile(sig)
                done += 1
    return done


class _Watch(event.Listener):
    """Wall time with at least one compilation running (in any thread), and the one-time notice."""

    def __init__(self, stream=None):
        self.stream = stream
        self.lock = threading.Lock()
        self.running = 0
        self.since = 0.0
        self.total = 0.0
        self.noticed = False
        self.timer: threading.Timer | None = None

    def on_start(self, ev) -> None:
        with self.lock:
            self.running += 1
            if self.running == 1:
                self.since = time.perf_counter()
                if not self.noticed and self.timer is None:
                    self.timer = threading.Timer(NOTICE_AFTER_S, self._notice)
                    self.timer.daemon = True
                    self.timer.start()

    def on_end(self, ev) -> None:
        with self.lock:
            self.running -= 1
            if self.running == 0:
                self.total += time.perf_counter() - self.since
                if self.timer is not None:
                    self.timer.cancel()
                    self.timer = None

    def _notice(self) -> None:
        with self.lock:
            if self.running == 0 or self.noticed:
                return
            self.noticed = True
            self.timer = None
        stream = self.stream or sys.stderr
        print(NOTICE, file=stream, flush=True)

    def seconds(self) -> float:
        with self.lock:
            return self.total + (time.perf_counter() - self.since if self.running else 0.0)


_watch = _Watch()
event.register("numba:compile", _watch)


def seconds() -> float:
    """Wall seconds this process has spent compiling cpu kernels so far."""
    return _watch.seconds()
