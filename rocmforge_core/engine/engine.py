"""The generation engine: batch-shaped steps over the paged KV cache, sampling through the ``sample`` op, and a
generation loop with statistics over one ``Sequence`` (engine/sequence.py: end-of-generation ids, stop strings,
limits, streamed text).

``step`` takes any mix of sequences (tokens, their sequence slots and positions, the rows that need logits), so
a continuous-batching server can drive it directly; ``generate`` runs one sequence: the whole prompt in one
prefill step, then one decode step per token. Step inputs live in tensors allocated once per step shape (phase,
tokens, logits rows; as many recently used shapes as ``Forward.max_programs``) and refilled with ``Backend.write``;
the forward pass replays the calls recorded on the first step of a shape. When the preferred backend can capture
(``Backend.capture``) and every decode site runs on it, decode steps replay a captured graph.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from rocmforge_core.engine.forward import Batch
from rocmforge_core.engine.kv_cache import KVCache
from rocmforge_core.engine.sampling import SamplingParams
from rocmforge_core.engine import sequence
from rocmforge_core.errors import RocmforgeError
from rocmforge_core.scheduler.guard import check_step

SAMPLING_SITES = ("sample", "sample_rows")  # run after a step, outside what a capture records
DEFAULT_CTX = 4096  # as llama.cpp: the cache holds this many tokens unless asked for more


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
    fallbacks: int = 0  # run-time kernel fallbacks (the hybrid scheduler counts them)
    copies: int = 0     # activation copies between backends during this generation
    seed: int | None = None

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.prefill_s if self.prefill_s else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        return self.generated_tokens / self.decode_s if self.decode_s else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "prefill_tokens_per_s": self.prefill_tokens_per_s,
                "decode_tokens_per_s": self.decode_tokens_per_s}


@dataclass
class Generation:
    prompt_ids: list[int]
    ids: list[int] = field(default_factory=list)  # generated tokens, without the end-of-generation token
    text: str = ""
    finish_reason: str = ""  # "eos" (an end-of-generation token), "stop" (a stop string), "length", "context"
    stop_token: int | None = None
    stats: Stats = field(default_factory=Stats)


class Engine:
    def __init__(self, model, *, n_ctx: int | None = None, max_seqs: int = 1, block_size: int = 16,
                 kv_dtype: str = "f32", kv_tokens: int | None = None):
        """``kv_tokens``: KV cache shared by all sequences, in tokens (default: room for max_seqs x n_ctx)."""
        cfg = model.config
        trained = cfg.context_length
        if n_ctx is not None and n_ctx < 2:
            raise ContextLengthError(f"the context must hold at least 2 tokens, got {n_ctx}")
        if n_ctx and trained and n_ctx > trained:
            raise ContextLengthError(f"a context of {n_ctx} tokens exceeds the {trained} this model was trained for")
        self.model = model
        self.forward = model.forward
        self.n_ctx = n_ctx or min(trained or DEFAULT_CTX, DEFAULT_CTX)
        layers = [(model.attention_backend(i), cfg.n_kv_heads, cfg.head_dim, cfg.head_dim_v)
                  for i in range(cfg.n_layers)]
        n_blocks = -(-kv_tokens // block_size) + 1 if kv_tokens else None  # + block 0, which no sequence owns
        self.cache = KVCache(layers, max_seqs=max_seqs, max_tokens=self.n_ctx, block_size=block_size,
                             n_blocks=n_blocks, table_backend=model.backend, dtype=kv_dtype)
        # (phase, tokens, logits rows) -> (inputs, step runner), least recently used first
        self._steps: OrderedDict[tuple[str, int, int], tuple[Batch, Callable]] = OrderedDict()
        self._rows: dict[int, object] = {}

    # -- steps ------------------------------------------------------------------------------------------------
    def step(self, tokens: Sequence[int], slots: Sequence[int], positions: Sequence[int],
             out_rows: Sequence[int], phase: str):
        """Run one batch; logits f32[len(out_rows), vocab] as a tensor of the backend that computed them.
        ``phase`` is "decode" when every token is its sequence's only new one, else "prefill"."""
        if not len(tokens) == len(slots) == len(positions) or (phase == "decode" and len(out_rows) != len(tokens)):
            raise ValueError("step: tokens, slots and positions must have one entry per token, and a decode step "
                             "needs one output row per token")
        ends: dict[int, int] = {}  # per sequence, the positions the step needs room for
        for slot, pos in zip(slots, positions):
            if pos >= ends.get(slot, 0):
                ends[slot] = pos + 1
        for slot, end in ends.items():
            self.cache.reserve(slot, end)
        self.cache.sync()
        batch, run = self._runner(phase, len(tokens), len(out_rows))
        batch.fill(self.model.backend, tokens=tokens, positions=positions, seq_ids=slots, out_rows=out_rows)
        fallbacks = self.model.plan.fallbacks
        logits = check_step(self.forward, self.model.planner, run(),
                            lambda: self.forward.run(batch, self.cache, phase))
        if self.model.plan.fallbacks != fallbacks:
            self._steps.clear()  # a captured step would replay the kernel that failed
        return logits

    def _new_batch(self, m: int, n_out: int) -> Batch:
        be = self.model.backend
        return Batch(*(be.empty((n,), "i32") for n in (m, m, m, n_out)))

    def _runner(self, phase: str, m: int, n_out: int):
        """Inputs and runner of a step of m tokens and n_out logits rows. The first step of a shape runs eagerly
        (placing any new signature, uploading what it needs, recording its calls); later ones replay a capture
        when the backend offers one (see ``first``), else the record."""
        key = (phase, m, n_out)
        if key in self._steps:
            self._steps.move_to_end(key)
            return self._steps[key]
        batch = self._new_batch(m, n_out)
        run = lambda: self.forward.run(batch, self.cache, phase)  # noqa: E731

        def again():
            runner = self._captured(run, phase) or run
            self._steps[key] = (batch, runner)
            return runner()

        def first():
            logits = run()
            # Decode shapes come back every token: capture at once. Others are captured when they come back
            # (repeated prompts, a server's chunk sizes), so a one-off prompt never pays for a graph's memory.
            self._steps[key] = (batch, (phase == "decode" and self._captured(run, phase)) or again)
            if len(self._steps) > self.forward.max_programs:
                self._steps.popitem(last=False)
            return logits
        return batch, first

    def _captured(self, run, phase: str) -> Callable | None:
        """A replay of the step ``run``, when the preferred backend captures and the whole step runs on it."""
        be = self.model.backend
        step_backends = {c.backend for c in self.model.plan.by_signature.values()
                         if c.phase == phase and c.site not in SAMPLING_SITES}
        if be.is_host or step_backends != {be.name}:
            return None
        out: dict = {}
        # A replay refills the captured output tensor in place; a backend whose replay re-runs the step stores
        # the new one.
        replay = be.capture(lambda: out.__setitem__("logits", run()))
        return (lambda: (replay(), out["logits"])[1]) if replay else None

    def logits_to_host(self, logits) -> np.ndarray:
        return self.forward.to_host(logits)

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

    def prefill(self, slot: int, ids: Sequence[int], *, all_logits: bool = False):
        """Logits of the last prompt position (or of every position) of a new sequence."""
        self.check_prompt(ids)
        n = len(ids)
        rows = range(n) if all_logits else [n - 1]
        return self.step(ids, [slot] * n, range(n), rows, "prefill")

    def sample(self, logits, row: int, history: Sequence[int], params: SamplingParams, step: int) -> int:
        """The next token of the sequence whose logits are ``row`` of a step's logits; ``step`` counts the tokens
        it generated so far (the seeded draw's counter)."""
        op_params = params.op_params()
        if op_params["seed"] is None:
            if not params.greedy:
                raise ValueError("sampling needs a concrete seed: pass SamplingParams.with_seed()")
            op_params["seed"] = 0  # greedy draws nothing
        vocab = logits.shape[-1]
        n_rows = logits.shape[0]
        if n_rows > 1:
            logits = self.forward.output_row(logits, self._row_index(row))
        history_t = self.model.backend.from_host(np.asarray(history, dtype=np.int32))
        token = self.forward.sample(logits.reshape(vocab), history_t, step=step, **op_params)
        return int(self.forward.to_host(token)[0])

    def _row_index(self, row: int):
        if row not in self._rows:
            self._rows[row] = self.model.backend.from_host(np.array([row], dtype=np.int32))
        return self._rows[row]

    # -- generation -------------------------------------------------------------------------------------------
    def generate(self, prompt_ids: Sequence[int], *, max_tokens: int = 128, sampling: SamplingParams | None = None,
                 stop: Iterable[str] = (), eog_ids: Iterable[int] = (), decoder=None,
                 on_text: Callable[[str], None] | None = None) -> Generation:
        """Generate up to ``max_tokens`` tokens after ``prompt_ids``. ``decoder`` (the tokenizer's streaming
        decoder: ``add(id) -> str``, ``flush() -> str``) turns tokens into text, which is checked against the stop
        strings and passed to ``on_text`` as it arrives."""
        seq = sequence.Sequence(prompt_ids, max_tokens=max_tokens, sampling=sampling, n_ctx=self.n_ctx, stop=stop,
                                eog_ids=eog_ids, decoder=decoder, on_text=on_text)
        stats = Stats(self.model.planner.preferred, self.model.load_seconds, len(seq.prompt_ids),
                      seed=seq.sampling.seed)
        self.check_prompt(seq.prompt_ids)
        copies0 = self.forward.copies
        slot = self.add_sequence()
        try:
            t0 = time.perf_counter()
            logits = self.prefill(slot, seq.prompt_ids)
            t1 = time.perf_counter()
            while not seq.finished:
                if not seq.accept(self.sample(logits, 0, seq.history, seq.sampling, seq.step)):
                    logits = self.step([seq.ids[-1]], [slot], [seq.position], [0], "decode")
            t2 = time.perf_counter()
        finally:
            self.free_sequence(slot)
        stats.prefill_s, stats.decode_s = t1 - t0, t2 - t1
        stats.generated_tokens = len(seq.ids)
        stats.copies = self.forward.copies - copies0
        stats.fallbacks = self.model.plan.fallbacks
        return Generation(seq.prompt_ids, seq.ids, seq.text, seq.finish_reason, stop_token=seq.stop_token, stats=stats)
