"""Server metrics in the Prometheus text exposition format (version 0.0.4).

Counters are bumped by the HTTP side (requests) and the engine thread (tokens, steps); gauges (queue depth, KV
cache use, resident memory, placement fallbacks) are read when /metrics is scraped."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, deque

RATE_WINDOW_S = 10.0  # generated tokens per second, averaged over this window


def resident_bytes() -> int:
    """This process's resident set size (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()  # (endpoint, status) -> count
        self.prompt_tokens = 0      # prompt tokens run through the model (prefill)
        self.completion_tokens = 0  # tokens generated
        self.cancelled = 0          # requests whose client left before their answer was complete
        self.decode_steps = 0
        self.decode_rows = 0        # sequences summed over decode steps: decode_rows / decode_steps = mean batch
        self.max_decode_batch = 0
        self.draft_tokens = 0       # speculative decoding: tokens proposed by the drafter
        self.draft_accepted = 0     # of those, accepted by the model
        self._recent: deque[tuple[float, int]] = deque()

    def request(self, endpoint: str, status: int) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1

    def add(self, counter: str, n: int = 1) -> None:
        """Bump a plain counter (from any thread)."""
        with self._lock:
            setattr(self, counter, getattr(self, counter) + n)

    def generated(self, n: int) -> None:
        now = time.monotonic()
        with self._lock:
            self.completion_tokens += n
            self._recent.append((now, n))

    def decode_step(self, batch: int) -> None:
        self.decode_steps += 1
        self.decode_rows += batch
        self.max_decode_batch = max(self.max_decode_batch, batch)

    def tokens_per_second(self) -> float:
        now = time.monotonic()
        with self._lock:
            while self._recent and self._recent[0][0] < now - RATE_WINDOW_S:
                self._recent.popleft()
            return sum(n for _, n in self._recent) / RATE_WINDOW_S

    def render(self, state) -> str:
        """The exposition text; ``state`` is the ServerState (its batcher and model may not be loaded yet)."""
        out: list[str] = []

        def metric(name: str, kind: str, help_: str, samples) -> None:
            out.append(f"# HELP rocmforge_{name} {help_}")
            out.append(f"# TYPE rocmforge_{name} {kind}")
            for labels, value in samples:
                label = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                out.append(f"rocmforge_{name}{{{label}}} {value}" if label else f"rocmforge_{name} {value}")

        with self._lock:
            requests = sorted(self.requests.items())
        metric("ready", "gauge", "1 when the model is loaded and requests are served", [({}, int(state.ready))])
        metric("requests_total", "counter", "HTTP requests answered, by endpoint and status",
               [({"endpoint": e, "status": str(s)}, n) for (e, s), n in requests])
        metric("prompt_tokens_total", "counter", "prompt tokens run through the model", [({}, self.prompt_tokens)])
        metric("generation_tokens_total", "counter", "tokens generated", [({}, self.completion_tokens)])
        metric("generation_tokens_per_second", "gauge", f"tokens generated per second over the last "
               f"{RATE_WINDOW_S:g} s", [({}, round(self.tokens_per_second(), 3))])
        metric("cancelled_total", "counter", "requests whose client left before their answer was complete",
               [({}, self.cancelled)])
        metric("decode_steps_total", "counter", "decode steps run", [({}, self.decode_steps)])
        metric("decode_sequences_total", "counter", "sequences summed over decode steps (divide by "
               "decode_steps_total for the mean batch)", [({}, self.decode_rows)])
        metric("decode_batch_max", "gauge", "largest decode batch so far", [({}, self.max_decode_batch)])
        metric("draft_tokens_total", "counter", "speculative decoding: draft tokens proposed",
               [({}, self.draft_tokens)])
        metric("draft_accepted_total", "counter", "speculative decoding: draft tokens the model accepted (divide by "
               "draft_tokens_total for the acceptance rate)", [({}, self.draft_accepted)])
        batcher = state.batcher
        if batcher is not None:
            s = batcher.stats()
            cache = batcher.cache
            total = batcher.capacity_blocks
            used = cache.blocks_in_use()
            metric("queue_depth", "gauge", "requests waiting for admission", [({}, s["waiting"])])
            metric("sequences_running", "gauge", "sequences in the running batch", [({}, s["running"])])
            metric("kv_blocks_total", "gauge", "KV cache blocks", [({}, total)])
            metric("kv_blocks_used", "gauge", "KV cache blocks holding tokens", [({}, used)])
            metric("kv_blocks_reserved", "gauge", "KV cache blocks reserved by admitted sequences",
                   [({}, s["reserved_blocks"])])
            metric("kv_cache_usage_ratio", "gauge", "KV cache blocks used / total",
                   [({}, round(used / total, 6) if total else 0)])
            metric("kv_block_tokens", "gauge", "tokens per KV cache block", [({}, cache.block_size)])
        model = state.model
        if model is not None:
            metric("fallback_sites", "gauge", "call sites placed off the preferred backend, by op and the "
                   "backend running them", [(dict(zip(("op", "backend", "phase"), k)), n)
                                            for k, n in sorted(placement_fallbacks(model).items())])
            metric("runtime_fallbacks_total", "counter", "kernels that failed at run time and were replaced, "
                   "by op and the replacement's backend",
                   [(dict(zip(("op", "backend"), k)), n) for k, n in sorted(runtime_fallbacks(model).items())])
        metric("process_resident_memory_bytes", "gauge", "resident memory of the server process",
               [({}, resident_bytes())])
        return "\n".join(out) + "\n"


def placement_fallbacks(model) -> Counter:
    """(op, backend, phase) -> number of call sites placed off the preferred backend."""
    preferred = model.planner.preferred
    return Counter((c.signature.op, c.backend, phase) for (_, phase), c in list(model.plan.choices.items())
                   if c.backend != preferred)


def runtime_fallbacks(model) -> Counter:
    """(op, backend) -> kernel failures replaced at run time (the hybrid planner's events; plan.fallbacks
    counted under op "unknown" when a planner keeps no events)."""
    events = getattr(model.planner, "events", None)
    if events is None:
        return Counter({("unknown", "unknown"): model.plan.fallbacks}) if model.plan.fallbacks else Counter()
    out: Counter = Counter()
    for e in list(events):
        choice = model.plan.choices.get((e["site"], e["phase"]))
        op = choice.signature.op if choice else "unknown"
        backend = choice.backend if choice else e.get("replacement", "unknown")
        out[(op, backend)] += 1
    return out


def _escape(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
