"""The generation engine: batch-shaped steps over the paged KV cache, each ending with the sampling of its logits
rows, and a generation loop with EOS/EOT and stop strings, streaming and statistics.

``step`` takes any mix of sequences (tokens, their sequence slots and positions, the rows that need logits, how
each row is sampled), so a continuous-batching server can drive it directly; ``generate`` runs one sequence: the
whole prompt in one prefill step, then one decode step per token. Each step shape (phase, tokens, logits rows,
the sampler's candidate bound and history width) is traced once into a program (forward.py), bound to kernels
and tensors by the executor (executor.py) and replayed; its inputs live in tensors allocated once and refilled
with ``Backend.write``. When the preferred backend can capture (``Backend.capture``) and the step runs on it, the
step replays a captured graph, sampling included, and only the token ids come back to the host. Decode batches
on such a backend are padded to a few sizes (``DECODE_BUCKETS``) so that a handful of graphs serve every batch.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from rocmforge_core.backend import NUMPY_DTYPES
from rocmforge_core.engine import sequence
from rocmforge_core.engine.executor import Bound, Executor, SamplerRefusedLogits
from rocmforge_core.engine.kv_cache import KVCache
from rocmforge_core.engine.sampling import GREEDY, RowSampling, SamplingParams
from rocmforge_core.engine.speculative import accept_verified, verification
from rocmforge_core.errors import RocmforgeError
from rocmforge_core.ops import arg_info, sample
from rocmforge_core.program import (BIAS_IDS, BIAS_VALUES, BLOCK_TABLES, HISTORY, OUT_ROWS, POSITIONS,
                                    SAMPLE_CONTROLS, SAMPLE_PARAMS, SEQ_IDS, TOKEN_MASK, TOKENS)

DEFAULT_CTX = 4096  # as llama.cpp: the cache holds this many tokens unless asked for more
MAX_STEPS = 32  # step shapes kept bound (a server's prefill sizes are powers of two: a handful)
DECODE_BUCKETS = (1, 2, 4, 8, 16, 32, 48, 64)  # decode batch sizes a capturing backend runs (padded up to)
# History columns of every step: the default penalty window, so that rows with and without penalties, and
# histories still filling up, share one step shape (each new shape is traced, bound and captured: a stall of its
# own). Wider windows round up to a power of two.
HISTORY_WIDTH = SamplingParams().penalty_last_n
PREFILL_CHUNK = 256  # prompt tokens per prefill step at most
# Steps of up to this many rows compute each row as they would alone (batch invariance: the hip kernels' decode
# products and attention splits, docs/ENGINE.md); longer prefill pieces run alone in their step.
PACK_ROWS = 64
POOLINGS = ("mean", "cls", "last")  # how embed pools a sequence's hidden states
GGUF_POOLING = {0: None, 1: "mean", 2: "cls", 3: "last", 4: None}  # <arch>.pooling_type (llama.cpp's numbers)


def pooling_of(config) -> str | None:
    """How the model pools a sequence into one embedding: its GGUF's ``<arch>.pooling_type`` (mean, cls, last),
    mean when the file does not say; None for "none" (per-token outputs) and "rank" (a reranker's score)."""
    kind = config.extra.get("pooling_type", 1)
    if kind not in GGUF_POOLING:
        raise RocmforgeError(f"the GGUF's pooling_type {kind!r} is not one of llama.cpp's (0-4)")
    return GGUF_POOLING[kind]


def prefill_pieces(n: int, chunk: int = PREFILL_CHUNK, start: int = 0) -> list[tuple[int, int]]:
    """The (start, end) pieces an n-token prompt is prefilled in from position ``start`` (its first ``start``
    tokens' KV found in the prefix cache), the same whoever runs it (``generate`` alone, the server's batcher
    among other sequences), so its KV cache and first token come out the same: runs of at most ``chunk`` tokens,
    each longer than PACK_ROWS a power of two (a few step shapes) that runs alone."""
    pieces = []
    while start < n:
        size = min(chunk, n - start)
        if size > PACK_ROWS:
            size = 1 << (size.bit_length() - 1)
        pieces.append((start, start + size))
        start += size
    return pieces


class ContextLengthError(RocmforgeError):
    """A prompt or a requested context does not fit the context length."""


@dataclass
class Stats:
    backend: str = ""
    load_s: float = 0.0
    prompt_tokens: int = 0
    prefill_s: float = 0.0
    generated_tokens: int = 0
    decode_s: float = 0.0
    compile_s: float = 0.0  # kernels compiled on first use during this generation, left out of prefill_s/decode_s
    fallbacks: int = 0  # run-time kernel fallbacks (the hybrid scheduler counts them)
    copies: int = 0     # activation copies between backends during this generation
    seed: int | None = None
    cached_tokens: int = 0  # prompt tokens whose KV came from the prefix cache (not computed)
    draft_tokens: int = 0    # speculative decoding: tokens proposed by the drafter
    draft_accepted: int = 0  # of those, accepted by the model
    decode_steps: int = 0

    @property
    def acceptance(self) -> float:
        """Share of the draft tokens the model accepted."""
        return self.draft_accepted / self.draft_tokens if self.draft_tokens else 0.0

    @property
    def prefill_tokens_per_s(self) -> float:
        """Prompt tokens computed (those of the prefix cache left out) per second."""
        return (self.prompt_tokens - self.cached_tokens) / self.prefill_s if self.prefill_s else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        return self.generated_tokens / self.decode_s if self.decode_s else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "prefill_tokens_per_s": self.prefill_tokens_per_s,
                "decode_tokens_per_s": self.decode_tokens_per_s, "acceptance": self.acceptance}


@dataclass
class Generation:
    prompt_ids: list[int]
    ids: list[int] = field(default_factory=list)  # generated tokens, without the end-of-generation token
    text: str = ""
    finish_reason: str = ""  # "eos" (an end-of-generation token), "stop" (a stop string), "length", "context"
    stop_token: int | None = None
    stats: Stats = field(default_factory=Stats)


class StepResult:
    """A step's logits (a tensor of the backend that computed them), its sampled token ids, one per logits row
    the caller asked for, and, when some row asked, every row's log-probabilities (the ``logprobs`` op's rows;
    None otherwise), each read from the device on first use.

    On a device backend the step may still be running when ``Engine.step`` returns it, so that the caller can do
    host work meanwhile: the first read of any of them (or the engine's next step, before it writes new inputs)
    waits for it and checks that its logits are finite, running the step again checked when they are not
    (``Executor.run_checked``: the failing kernel replaced, or an error naming the site)."""

    def __init__(self, engine: "Engine", bound: Bound, values: list, n_out: int, settled: bool):
        self._engine, self._bound, self._values, self._n_out = engine, bound, values, n_out
        self._settled = settled
        self._ids: list[int] | None = None
        self._lp: np.ndarray | None = None

    def settle(self) -> None:
        if self._settled:
            return
        self._settled = True
        engine = self._engine
        if not engine.executor._finite(self._values[self._bound.logits_slot]):
            self._values = engine.run_checked(self._bound)

    def _value(self, slot: int | None):
        self.settle()
        return None if slot is None else self._values[slot]

    @property
    def logits(self):
        return self._value(self._bound.logits_slot)

    @property
    def tokens(self) -> list[int]:
        if self._ids is None:
            self._ids = [int(t) for t in self._engine.executor.to_host(self._value(self._bound.tokens_slot))
                         [:self._n_out]]
        return self._ids

    @property
    def logprobs(self) -> np.ndarray | None:
        values = self._value(self._bound.logprobs_slot)
        if self._lp is None and values is not None:
            self._lp = self._engine.executor.to_host(values)[:self._n_out]
        return self._lp


@dataclass
class _Inputs:
    """A step shape's input tensors, allocated once on the preferred backend and refilled when values change."""
    tensors: dict  # step input id -> tensor
    written: dict = field(default_factory=dict)  # id -> the values it holds

    def fill(self, backend, values: dict) -> None:
        for key, v in values.items():
            tensor = self.tensors[key]
            array = np.asarray(v, dtype=NUMPY_DTYPES[arg_info(tensor).dtype])
            last = self.written.get(key)
            if last is array:  # a constant the engine keeps (the unconstrained mask and bias): unchanged
                continue
            if last is None or not np.array_equal(last, array):
                backend.write(tensor, array.reshape(tensor.shape))
                self.written[key] = array


@dataclass
class _Shape:
    """One step shape: its inputs, bound calls (with the program), and how a step of it runs now."""
    key: tuple
    inputs: _Inputs
    bound: Bound | None = None
    runner: Callable | None = None
    runs: int = 0  # steps run before the runner settled


class Engine:
    def __init__(self, model, *, n_ctx: int | None = None, max_seqs: int = 1, block_size: int = 16,
                 kv_dtype: str = "f32", kv_tokens: int | None = None, prefill_chunk: int = PREFILL_CHUNK,
                 prefix_cache: bool = True):
        """``kv_tokens``: KV cache shared by all sequences, in tokens (default: room for max_seqs x n_ctx).
        ``prefill_chunk``: prompt tokens per prefill step at most (see prefill_pieces). ``prefix_cache``: keep
        full KV blocks named by their tokens, so a later prompt sharing the prefix skips computing it."""
        if prefill_chunk < 1:
            raise RocmforgeError(f"the prefill chunk must be at least 1 token, got {prefill_chunk}")
        self.prefill_chunk = prefill_chunk
        cfg = model.config
        trained = cfg.context_length
        if n_ctx is not None and n_ctx < 2:
            raise ContextLengthError(f"the context must hold at least 2 tokens, got {n_ctx}")
        if n_ctx and trained and n_ctx > trained:
            raise ContextLengthError(f"a context of {n_ctx} tokens exceeds the {trained} this model was trained for")
        self.model = model
        self.executor = Executor(model.planner, model.backends, model.weights)
        self.n_ctx = n_ctx or min(trained or DEFAULT_CTX, DEFAULT_CTX)
        layers = [(model.attention_backend(i), cfg.n_kv_heads, cfg.head_dim, cfg.head_dim_v)
                  for i in range(cfg.n_layers)]
        n_blocks = -(-kv_tokens // block_size) + 1 if kv_tokens else None  # + block 0, which no sequence owns
        self.cache = KVCache(layers, max_seqs=max_seqs, max_tokens=self.n_ctx, block_size=block_size,
                             n_blocks=n_blocks, table_backend=model.backend, dtype=kv_dtype,
                             prefix_cache=prefix_cache)
        self.max_steps = MAX_STEPS
        self._shapes: OrderedDict[tuple, _Shape] = OrderedDict()  # least recently used first
        self._made_for = (model.plan.version, self.cache.version)
        self._unconstrained: dict[int, tuple] = {}  # rows -> read-only all-ones mask and empty bias
        self._last: StepResult | None = None  # the latest step, maybe still running and not checked yet

    @property
    def pads_decode(self) -> bool:
        """Whether decode batches are padded to DECODE_BUCKETS: on a backend that captures steps."""
        return not self.model.backend.is_host

    # -- steps ------------------------------------------------------------------------------------------------
    def step(self, tokens: Sequence[int], slots: Sequence[int], positions: Sequence[int],
             out_rows: Sequence[int], phase: str, sampling: Sequence[RowSampling | None] | None = None) -> StepResult:
        """Run one batch and sample its logits rows (``sampling``: one entry per row, None or absent for greedy).
        ``phase`` is "decode" when every token is its sequence's only new one, else "prefill"."""
        n, n_out = len(tokens), len(out_rows)
        if not n == len(slots) == len(positions) or (phase == "decode" and n_out != n):
            raise ValueError("step: tokens, slots and positions must have one entry per token, and a decode step "
                             "needs one output row per token")
        sampling = [s or RowSampling() for s in (sampling or [None] * n_out)]
        rows = [s.as_row() for s in sampling]
        if len(rows) != n_out:
            raise ValueError("step: sampling needs one entry per output row")
        self._settle()
        ends: dict[int, int] = {}  # per sequence, the positions the step needs room for
        for slot, pos in zip(slots, positions):
            if pos >= ends.get(slot, 0) and slot != self.cache.pad_slot:  # padding rows own no blocks
                ends[slot] = pos + 1
        for slot, end in ends.items():
            self.cache.reserve(slot, end)
        self.cache.sync()
        tokens, slots, positions, out_rows = list(tokens), list(slots), list(positions), list(out_rows)
        if phase == "decode" and self.pads_decode:
            pad = next((b for b in DECODE_BUCKETS if b >= n), -(-n // DECODE_BUCKETS[-1]) * DECODE_BUCKETS[-1]) - n
            tokens += [0] * pad
            slots += [self.cache.pad_slot] * pad
            positions += [0] * pad
            out_rows = list(range(n + pad))
            rows += [RowSampling().as_row()] * pad
        vocab = self.model.config.vocab_size
        window = min(max((s.penalty_window for s in sampling), default=0), self.n_ctx)
        width = max(HISTORY_WIDTH, 1 << (window - 1).bit_length() if window else 0)
        history, params, controls = sample.pack(rows, width)
        bias = sample.bias_width(rows)
        mask, bias_ids, bias_values = self._constraints(rows, vocab, bias)
        logprobs = any(r["logprobs"] for r in rows)
        shape = self._shape(phase, len(tokens), len(out_rows), sample.candidates(rows, vocab), width, bias, logprobs)
        shape.inputs.fill(self.model.backend, {TOKENS: tokens, POSITIONS: positions, SEQ_IDS: slots,
                                               OUT_ROWS: out_rows, HISTORY: history, SAMPLE_PARAMS: params,
                                               SAMPLE_CONTROLS: controls, TOKEN_MASK: mask, BIAS_IDS: bias_ids,
                                               BIAS_VALUES: bias_values})
        bound = shape.bound
        fallbacks = self.model.plan.fallbacks
        try:
            self._last = StepResult(self, bound, shape.runner(), n_out, settled=False)
        except SamplerRefusedLogits:
            self._last = StepResult(self, bound, self.run_checked(bound), n_out, settled=True)
        if self.model.plan.fallbacks != fallbacks:
            self._shapes.clear()  # a bound or captured step would replay the kernel that failed
        return self._last

    def run_checked(self, bound: Bound) -> list:
        """A step's calls run again, each output checked (its logits were not finite)."""
        fallbacks = self.model.plan.fallbacks
        values = self.executor.run_checked(bound)
        if self.model.plan.fallbacks != fallbacks:
            self._shapes.clear()
        return values

    def _settle(self) -> None:
        """Wait for the last step and check it before anything writes the inputs it may be run again on."""
        if self._last is not None:
            self._last.settle()

    def _constraints(self, rows: list[dict], vocab: int, bias: int) -> tuple:
        """The step's mask and bias arrays; a step without either gets constants made once per row count, so its
        inputs are neither rebuilt nor compared."""
        if bias > 1 or any(r["mask"] is not None for r in rows):
            return sample.pack_constraints(rows, vocab, bias)
        made = self._unconstrained.get(len(rows))
        if made is None:
            made = sample.pack_constraints(rows, vocab, 1)
            for array in made:
                array.flags.writeable = False
            self._unconstrained[len(rows)] = made
        return made

    def _shape(self, phase: str, m: int, n_out: int, candidates: int, history: int, bias: int = 1,
               logprobs: bool = False, output: str = "logits") -> _Shape:
        made_for = (self.model.plan.version, self.cache.version)
        if made_for != self._made_for:  # a replaced kernel, or moved cache tensors: bind everything again
            self._shapes.clear()
            self._made_for = made_for
        key = (phase, m, n_out, candidates, history, bias, logprobs, output)
        shape = self._shapes.get(key)
        if shape is not None:
            self._shapes.move_to_end(key)
            return shape
        cache = self.cache
        caches = (arg_info(cache.tables), [(arg_info(k), arg_info(v)) for k, v in zip(cache.k, cache.v)])
        program = self.model.forward.trace(phase, m, n_out, candidates=candidates, history=history, bias=bias,
                                           logprobs=logprobs, caches=caches, output=output)
        be = self.model.backend
        tensors = {BLOCK_TABLES: cache.tables}
        for site in program.sites:
            for a in site.args:
                src = getattr(a, "src", None)
                if src is not None and src < 0 and src not in tensors:
                    tensors[src] = be.empty(a.shape, a.dtype_name)
        shape = _Shape(key, _Inputs(tensors))
        shape.bound = self.executor.bind(program, tensors, cache)
        shape.runner = self._first_run(shape)
        self._shapes[key] = shape
        if len(self._shapes) > self.max_steps:
            self._shapes.popitem(last=False)
        return shape

    def hidden_states(self, slot: int, ids: Sequence[int]) -> np.ndarray:
        """The final hidden states (after the output norm), f32[len(ids), d_model], of a new sequence's tokens
        ``ids`` at positions 0.., read in the prompt's prefill pieces by programs with no output matrix and no
        sampling (``Forward.trace(output="hidden")``). Each piece is padded to a power of two of tokens (padding
        rows write only the cache's padding slot), so a few step shapes serve every length."""
        self.check_prompt(ids)
        self._settle()
        rows = []
        for start, end in prefill_pieces(len(ids), self.prefill_chunk):
            n = end - start
            m = 1 << (n - 1).bit_length()
            pad = m - n
            tokens = list(ids[start:end]) + [0] * pad
            slots = [slot] * n + [self.cache.pad_slot] * pad
            positions = list(range(start, end)) + [0] * pad
            self.cache.reserve(slot, end)
            self.cache.sync()
            shape = self._shape("prefill", m, m, 1, 1, output="hidden")
            shape.inputs.fill(self.model.backend, {TOKENS: tokens, POSITIONS: positions, SEQ_IDS: slots,
                                                   OUT_ROWS: list(range(m))})
            values = shape.runner()
            rows.append(self.executor.to_host(values[shape.bound.logits_slot])[:n])
        return np.concatenate(rows).astype(np.float32)

    def embed(self, slot: int, ids: Sequence[int], pooling: str) -> np.ndarray:
        """The L2-normalized embedding f32[d_model] of ``ids``: the hidden states pooled by ``pooling`` ("mean" of
        all positions, "cls": the first, "last": the last)."""
        h = self.hidden_states(slot, ids).astype(np.float64)
        if pooling not in POOLINGS:
            raise RocmforgeError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
        v = h.mean(axis=0) if pooling == "mean" else h[0] if pooling == "cls" else h[-1]
        norm = np.linalg.norm(v)
        return (v / norm if norm > 0 else v).astype(np.float32)

    def _first_run(self, shape: _Shape) -> Callable:
        """The first step of a shape runs the bound calls; a decode shape is captured at once after it (it comes
        back every token), any other when it comes back (a one-off prompt never pays for a graph's memory)."""
        def eager():
            return self.executor.run(shape.bound)

        def run():
            shape.runs += 1
            if shape.runs == 1:
                values = eager()
                if shape.key[0] == "decode":
                    shape.runner = self._captured(shape) or eager
                return values
            shape.runner = self._captured(shape) or eager
            return shape.runner()
        return run

    def _captured(self, shape: _Shape) -> Callable | None:
        """A replay of the shape's step, when the preferred backend captures and runs at least every call up to the
        logits (later calls, a sampler placed elsewhere, run after the replay)."""
        be, bound = self.model.backend, shape.bound
        if be.is_host:
            return None
        start = next((j for j, c in enumerate(bound.calls) if c.backend is not be), len(bound.calls))
        if start <= bound.logits_slot:
            return None
        out: dict = {}
        # A replay refills the captured tensors in place; a backend whose replay re-runs the step stores new ones.
        replay = be.capture(lambda: out.__setitem__("values", self.executor.run(bound, upto=start)))
        if replay is None:
            return None

        def run():
            replay()
            return self.executor.run_from(bound, start, list(out["values"]))
        return run

    def warm_up(self, sampling: Sequence[SamplingParams] = (GREEDY, SamplingParams(seed=0)),
                max_rows: int | None = None) -> int:
        """Run, once, a decode step of every batch size the cache's sequence slots can make (the DECODE_BUCKETS up
        to max_seqs, or up to ``max_rows``: a speculating server's verification steps have several rows per
        sequence) for each way of sampling in ``sampling`` (greedy and the default chain: the candidate bounds
        most requests have), and one prefill step of PACK_ROWS tokens, all on the cache's padding slot: kernels are
        compiled and decode steps captured before the first request needs them. Returns the steps run."""
        pad, runs = self.cache.pad_slot, 0
        top = max_rows or self.cache.max_seqs
        sizes = [b for b in DECODE_BUCKETS if b < top] + [top]
        if not self.pads_decode:
            sizes = sizes[-1:]
        for params in sampling:
            for n in sizes:
                self.step([0] * n, [pad] * n, [0] * n, range(n), "decode", [RowSampling(params)] * n).tokens
                runs += 1
        n = min(PACK_ROWS, self.n_ctx)
        self.step([0] * n, [pad] * n, range(n), [n - 1], "prefill").tokens
        return runs + 1

    def _speculate(self, seq, slot: int, speculation, stats: Stats) -> None:
        """Decode ``seq`` to its end in verification steps of its drafter's tokens (speculative.py)."""
        while not seq.finished:
            room = min(speculation.draft_max, seq.draft_room())
            draft = speculation.drafter.propose([(slot, seq.context, room)])[0][:room] if room else []
            rows = verification(seq, draft)
            n = len(rows.tokens)
            result = self.step(rows.tokens, [slot] * n, rows.positions, range(n), "decode", rows.sampling)
            stats.decode_steps += 1
            stats.draft_tokens += len(draft)
            written = iter(range(seq.position + 1, seq.position + n + 1))

            def take(token, written=written):
                self.cache.commit(slot, next(written), seq.tokens)  # the KV of the row that sampled it is written
                return seq.accept(token)
            stats.draft_accepted += accept_verified(draft, result.tokens, take)

    def _compile_seconds(self) -> float:
        return sum(backend.compile_seconds() for backend in self.model.backends.values())

    def logits_to_host(self, logits) -> np.ndarray:
        return self.executor.to_host(logits)

    # -- sequences --------------------------------------------------------------------------------------------
    def add_sequence(self) -> int:
        return self.cache.add_sequence()

    def free_sequence(self, slot: int) -> None:
        self.cache.free_sequence(slot)

    def check_prompt(self, ids: Sequence[int]) -> None:
        n_prompt, vocab = len(ids), self.model.config.vocab_size
        bad = next((t for t in ids if not 0 <= t < vocab), None)
        if bad is not None:
            raise RocmforgeError(f"token id {bad} is outside this model's vocabulary of {vocab}")
        if n_prompt == 0:
            raise ContextLengthError("the prompt is empty: at least one token is needed")
        if n_prompt >= self.n_ctx:
            raise ContextLengthError(f"the prompt has {n_prompt} tokens but the context holds {self.n_ctx}; "
                                     "shorten the prompt or raise --ctx-size")

    def prefill(self, slot: int, ids: Sequence[int], *, all_logits: bool = False,
                sampling: RowSampling | None = None) -> StepResult:
        """Logits of the last prompt position (or of every position) of a new sequence, and the token sampled
        from the last position's."""
        self.check_prompt(ids)
        n = len(ids)
        rows = range(n) if all_logits else [n - 1]
        return self.step(ids, [slot] * n, range(n), rows, "prefill",
                         [None] * (len(rows) - 1) + [sampling] if sampling else None)

    # -- generation -------------------------------------------------------------------------------------------
    def generate(self, prompt_ids: Sequence[int], *, max_tokens: int = 128, sampling: SamplingParams | None = None,
                 stop: Iterable[str] = (), eog_ids: Iterable[int] = (), decoder=None,
                 on_text: Callable[[str], None] | None = None, speculation=None) -> Generation:
        """Generate up to ``max_tokens`` tokens after ``prompt_ids``. ``decoder`` (the tokenizer's streaming
        decoder: ``add(id) -> str``, ``flush() -> str``) turns tokens into text, which is checked against the stop
        strings and passed to ``on_text`` as it arrives. ``speculation`` (speculative.Speculation): decode by
        verifying its drafter's tokens, several per step (the same tokens, see speculative.py)."""
        seq = sequence.Sequence(prompt_ids, max_tokens=max_tokens, sampling=sampling, n_ctx=self.n_ctx, stop=stop,
                                eog_ids=eog_ids, decoder=decoder, on_text=on_text)
        stats = Stats(self.model.planner.preferred, self.model.load_seconds, len(seq.prompt_ids),
                      seed=seq.sampling.seed)
        self.check_prompt(seq.prompt_ids)
        copies0 = self.executor.copies
        slot = self.add_sequence()
        try:
            c0 = self._compile_seconds()
            t0 = time.perf_counter()
            ids = seq.prompt_ids
            stats.cached_tokens = self.cache.match_prefix(slot, ids)
            for start, end in prefill_pieces(len(ids), self.prefill_chunk, stats.cached_tokens):
                result = self.step(ids[start:end], [slot] * (end - start), range(start, end), [end - start - 1],
                                   "prefill", [seq.row()])
            self.cache.commit(slot, len(ids), seq.tokens)
            token = result.tokens[0]
            t1, c1 = time.perf_counter(), self._compile_seconds()
            if not seq.finished and not seq.accept(token):
                if speculation is None:
                    finished = False
                    while not finished:
                        stats.decode_steps += 1
                        position = seq.position
                        token = self.step([seq.ids[-1]], [slot], [position], [0], "decode", [seq.row()]).tokens[0]
                        self.cache.commit(slot, position + 1, seq.tokens)
                        finished = seq.accept(token)
                else:
                    self._speculate(seq, slot, speculation, stats)
            t2, c2 = time.perf_counter(), self._compile_seconds()
        finally:
            self.free_sequence(slot)
            if speculation is not None:
                speculation.drafter.release(slot)
        stats.prefill_s, stats.decode_s = t1 - t0 - (c1 - c0), t2 - t1 - (c2 - c1)
        stats.compile_s = c2 - c0
        stats.generated_tokens = len(seq.ids)
        stats.copies = self.executor.copies - copies0
        stats.fallbacks = self.model.plan.fallbacks
        return Generation(seq.prompt_ids, seq.ids, seq.text, seq.finish_reason, stop_token=seq.stop_token, stats=stats)
