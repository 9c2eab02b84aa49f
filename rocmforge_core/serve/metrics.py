"""Server metrics in the Prometheus text format, written by prometheus_client.

Counters are bumped by the HTTP side (requests) and the engine thread (tokens, steps) as plain numbers; gauges
(queue depth, KV cache use, resident memory, placement fallbacks) and the batcher's own counts (preemptions,
prefix cache) are read when /metrics is scraped. The latency histograms (time to first token, inter-token
latency, end-to-end request latency, queue time) are prometheus_client ``Histogram`` values that the engine
thread observes into."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, deque

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

RATE_WINDOW_S = 10.0  # generated tokens per second, averaged over this window
CONTENT_TYPE = CONTENT_TYPE_LATEST
# Bucket bounds in seconds: from a small model's CPU step (ms) to a long answer on a busy server (minutes).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0,
                   10.0, 20.0, 40.0, 80.0, 160.0, 640.0)
REQUEST_BUCKETS = (0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0,
                   240.0, 480.0, 960.0, 1920.0)


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
        self.registry = CollectorRegistry(auto_describe=False)  # one per server: tests run several in a process

        def histogram(name: str, help_: str, buckets) -> Histogram:
            return Histogram(f"rocmforge_{name}", help_, buckets=buckets, registry=self.registry)
        self.ttft = histogram("time_to_first_token_seconds", "seconds from a request's arrival to its first "
                              "token", LATENCY_BUCKETS)
        self.inter_token = histogram("inter_token_latency_seconds", "seconds between two tokens of one "
                                     "sequence", LATENCY_BUCKETS)
        self.e2e = histogram("e2e_request_latency_seconds", "seconds from a request's arrival to its last token "
                             "(requests that ended normally)", REQUEST_BUCKETS)
        self.queue_time = histogram("request_queue_time_seconds", "seconds a request waited for its first "
                                    "admission", REQUEST_BUCKETS)

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

    def render(self, state) -> bytes:
        """The exposition text; ``state`` is the ServerState (its batcher and model may not be loaded yet)."""
        return generate_latest(_Scrape(self, state))


class _Scrape:
    """What one scrape exposes: the counters and gauges read now, then the histograms (``collect`` is all
    prometheus_client's writer asks of a registry)."""

    def __init__(self, metrics: Metrics, state):
        self.metrics, self.state = metrics, state

    def collect(self):
        m, state = self.metrics, self.state

        def family(kind, name: str, help_: str, value=None, labels: tuple[str, ...] = (), samples=()):
            f = kind(f"rocmforge_{name}", help_, value=value, labels=labels or None)
            for label_values, v in samples:
                f.add_metric(label_values, v)
            return f

        def counter(name: str, help_: str, value=None, **kw):
            return family(CounterMetricFamily, name, help_, value, **kw)

        def gauge(name: str, help_: str, value=None, **kw):
            return family(GaugeMetricFamily, name, help_, value, **kw)

        with m._lock:
            requests = sorted(m.requests.items())
        yield gauge("ready", "1 when the model is loaded and requests are served", int(state.ready))
        yield counter("requests_total", "HTTP requests answered, by endpoint and status",
                      labels=("endpoint", "status"), samples=[((e, str(s)), n) for (e, s), n in requests])
        yield counter("prompt_tokens_total", "prompt tokens run through the model", m.prompt_tokens)
        yield counter("generation_tokens_total", "tokens generated", m.completion_tokens)
        yield gauge("generation_tokens_per_second", f"tokens generated per second over the last "
                    f"{RATE_WINDOW_S:g} s", round(m.tokens_per_second(), 3))
        yield counter("cancelled_total", "requests whose client left before their answer was complete",
                      m.cancelled)
        yield counter("decode_steps_total", "decode steps run", m.decode_steps)
        yield counter("decode_sequences_total", "sequences summed over decode steps (divide by "
                      "decode_steps_total for the mean batch)", m.decode_rows)
        yield gauge("decode_batch_max", "largest decode batch so far", m.max_decode_batch)
        yield counter("draft_tokens_total", "speculative decoding: draft tokens proposed", m.draft_tokens)
        yield counter("draft_accepted_total", "speculative decoding: draft tokens the model accepted (divide by "
                      "draft_tokens_total for the acceptance rate)", m.draft_accepted)
        batcher = state.batcher
        if batcher is not None:
            s = batcher.stats()
            cache = batcher.cache
            total = batcher.capacity_blocks
            used = cache.blocks_in_use()
            yield gauge("queue_depth", "requests waiting for admission (preempted ones included)", s["waiting"])
            yield gauge("sequences_running", "sequences in the running batch", s["running"])
            yield counter("preemptions_total", "running sequences sent back to the queue to free KV blocks "
                          "(recomputed when readmitted)", s["preemptions"])
            yield gauge("kv_blocks_total", "KV cache blocks", total)
            yield gauge("kv_blocks_used", "KV cache blocks referenced by sequences", used)
            yield gauge("kv_blocks_cached", "KV cache blocks no sequence references, kept for the prefix cache "
                        "until needed", cache.allocator.n_cached)
            yield gauge("kv_cache_usage_ratio", "KV cache blocks used / total",
                        round(used / total, 6) if total else 0)
            yield gauge("kv_block_tokens", "tokens per KV cache block", cache.block_size)
            yield counter("prefix_cache_queries_total", "prompt tokens looked up in the prefix cache at "
                          "admission", s["prefix_cache_queries"])
            yield counter("prefix_cache_hits_total", "prompt tokens found in the prefix cache (not computed)",
                          s["prefix_cache_hits"])
            yield gauge("prefix_cache_hit_rate", "prefix_cache_hits_total / prefix_cache_queries_total",
                        round(s["prefix_cache_hits"] / s["prefix_cache_queries"], 6) if s["prefix_cache_queries"]
                        else 0)
        model = state.model
        if model is not None:
            yield gauge("fallback_sites", "call sites placed off the preferred backend, by op and the backend "
                        "running them", labels=("op", "backend", "phase"),
                        samples=sorted(placement_fallbacks(model).items()))
            yield counter("runtime_fallbacks_total", "kernels that failed at run time and were replaced, by op "
                          "and the replacement's backend", labels=("op", "backend"),
                          samples=sorted(runtime_fallbacks(model).items()))
        yield gauge("process_resident_memory_bytes", "resident memory of the server process", resident_bytes())
        yield from m.registry.collect()


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
