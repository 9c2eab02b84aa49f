"""The continuous batcher: one thread owns the engine and runs a loop in which requests join and leave the
running batch at every step.

Each iteration (1) frees cancelled sequences, (2) admits waiting requests while a sequence slot is free and the
KV cache can hold their prompt plus their token budget, (3) runs one decode step over every sequence that is
generating (one token each, over the paged KV cache, each with its own sampling parameters and seed), and
(4) runs one prefill step of at most the engine's ``prefill_chunk`` prompt tokens, taken in arrival order from
sequences still reading their prompt, so a long prompt is spread over several iterations instead of stalling
running streams. Each prompt is read in its own pieces (``engine.prefill_pieces``), long ones alone in their step,
short ones sharing a step: exactly the pieces ``rocmforge run`` reads it in, so batching changes no result.
Prefill steps come in power-of-two sizes only, so the set of step shapes stays small and fixed.

Admission reserves the KV blocks a request can reach (prompt + max_tokens, capped by the context), so a running
sequence never finds the cache full: requests wait in a bounded queue instead, and beyond it ``submit`` answers
503. Each request is an engine ``Sequence`` (engine/sequence.py), the one ``Engine.generate`` runs: the same
penalty history, ``(seed, step)`` draw and stopping rules, so a request gives the same tokens whether it runs
alone, batched, or through ``rocmforge run``.

A sequence that has held its slot for ``time_limit`` seconds ends as if it had reached max_tokens ("length").
``drain`` (the server was told to stop) refuses new requests and ends the waiting ones at once; running ones may
finish for a grace period, after which they end with a 503 error.

Sequences talk to the HTTP side only through their ``sink`` (called from this thread with ``("text", str)``,
``("done", finish_reason)`` or ``("error", APIError)``); the HTTP side calls ``cancel`` from its own thread.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from typing import Callable, Iterable

from rocmforge_core.engine import SamplingParams, sequence
from rocmforge_core.engine.engine import PACK_ROWS, prefill_pieces
from rocmforge_core.engine.grammar import GrammarError
from rocmforge_core.errors import RocmforgeError
from rocmforge_core.serve.errors import APIError

log = logging.getLogger("rocmforge.serve")

FINISH = {"eos": "stop", "stop": "stop", "length": "length", "context": "length",  # engine -> OpenAI names
          "time": "length"}
SHUTTING_DOWN = "the server is shutting down"
_ids = itertools.count(1)


class Sequence(sequence.Sequence):
    """One request's generation: the engine's sequence (tokens, sampling state, stopping rules, text) plus what is
    the server's: its event sink, slot, prefill progress, KV reservation, cancellation and timing. ``max_tokens``
    is already capped so prompt + max_tokens fits the context."""

    def __init__(self, prompt_ids: list[int], max_tokens: int, sampling: SamplingParams, sink: Callable[[tuple], None],
                 stop: Iterable[str] = (), eog_ids: Iterable[int] = (), decoder=None, **rules):
        """``rules``: the engine sequence's logit_bias, constraint and logprobs."""
        super().__init__(prompt_ids, max_tokens=max_tokens, sampling=sampling, stop=stop, eog_ids=eog_ids,
                         decoder=decoder, on_text=lambda text: self.emit(("text", text)), **rules)
        self.sink = sink
        self.id = next(_ids)
        self.slot: int | None = None
        self.prefilled = 0  # prompt tokens already in the KV cache
        self.reserved = 0  # KV blocks held for this sequence at admission
        self.cancelled = False
        self.submitted = time.monotonic()
        self.deadline: float | None = None  # when the time limit ends it (set at admission)
        self.first_token_at: float | None = None

    def emit(self, event: tuple) -> None:
        try:
            self.sink(event)
        except Exception:  # a sink whose event loop is gone (server shutting down): nobody is listening
            log.debug("sequence %d: event %s dropped", self.id, event[0])


class Batcher:
    def __init__(self, engine, *, max_queue: int = 64, metrics=None, time_limit: float | None = None):
        self.engine = engine
        self.time_limit = time_limit
        self.cache = engine.cache
        self.max_queue = max_queue
        self.prefill_chunk = engine.prefill_chunk
        self.metrics = metrics
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.reserved_blocks = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._drain_deadline: float | None = None  # set by ``drain``: running sequences end with 503 then
        self._thread: threading.Thread | None = None  # the one running ``run``

    # -- called from the HTTP side --------------------------------------------------------------------------
    @property
    def capacity_blocks(self) -> int:
        return self.cache.allocator.n_blocks - 1  # block 0 is never handed out

    @property
    def max_sequence_tokens(self) -> int:
        """Prompt plus generated tokens one sequence can reach: the context, or the whole KV cache if smaller."""
        return min(self.engine.n_ctx, self.capacity_blocks * self.cache.block_size)

    def blocks_needed(self, n_tokens: int) -> int:
        return -(-n_tokens // self.cache.block_size)

    def submit(self, seq: Sequence) -> None:
        """Queue ``seq``, bounded by the engine's context as ``generate`` is; APIError 400 if it can never fit the
        cache, 503 if the queue is full."""
        need = self.blocks_needed(len(seq.prompt_ids) + seq.max_tokens)
        if need > self.capacity_blocks:
            raise APIError(f"the request needs {need * self.cache.block_size} tokens of KV cache (prompt plus "
                           f"max_tokens) but the server holds {self.capacity_blocks * self.cache.block_size}; "
                           "lower max_tokens", param="max_tokens")
        if seq.finished:  # max_tokens 0: nothing to compute
            seq.emit(("done", seq.finish_reason))
            return
        seq.n_ctx = self.engine.n_ctx
        with self._cond:
            if self._stopping or self._drain_deadline is not None:
                raise APIError(SHUTTING_DOWN, status=503)
            if len(self.waiting) >= self.max_queue:
                raise APIError(f"the server is busy: {len(self.waiting)} requests are already waiting; retry "
                               "later", status=503, code="queue_full")
            self.waiting.append(seq)
            self._cond.notify()

    def cancel(self, seq: Sequence) -> None:
        """Stop ``seq`` (the client went away); its slot and KV blocks are freed before the next step."""
        with self._cond:
            if seq.finish_reason:
                return
            seq.cancelled = True
            waiting = seq in self.waiting
            if waiting:  # never admitted: nothing to free
                self.waiting.remove(seq)
                seq.finish_reason = "cancelled"
            self._cond.notify()
        if waiting and self.metrics:
            self.metrics.add("cancelled")

    def start(self) -> None:
        """Run the loop in a thread of its own (the engine must have been built in a thread whose device
        context that one shares: ServerState runs ``run`` in the thread that loaded the model instead)."""
        self._thread = threading.Thread(target=self.run, name="rocmforge-engine", daemon=True)
        self._thread.start()

    def drain(self, grace: float) -> None:
        """The server is stopping: refuse new requests, end the waiting ones now (503) and the running ones once
        ``grace`` seconds have passed, unless they finish first."""
        with self._cond:
            self._drain_deadline = time.monotonic() + grace
            for seq in self.waiting:
                seq.finish_reason = "error"
                seq.emit(("error", APIError(SHUTTING_DOWN, status=503)))
            self.waiting.clear()
            self._cond.notify()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout)

    def stats(self) -> dict:
        with self._cond:
            return {"waiting": len(self.waiting), "running": len(self.running),
                    "reserved_blocks": self.reserved_blocks}

    # -- the engine thread ----------------------------------------------------------------------------------
    def run(self) -> None:
        """The engine loop, until ``stop``; every engine call happens in the thread running it."""
        self._thread = threading.current_thread()
        while True:
            with self._cond:
                while not self._stopping and not self.running and not self.waiting:
                    self._cond.wait()
                if self._stopping:
                    break
                self._admit()
            self._drop_cancelled()
            self._end_overdue()
            try:
                self._decode()
                self._prefill()
            except RocmforgeError as exc:  # non-finite logits, --strict: the message names the site and kernel
                log.error("rocmforge: engine step failed: %s", exc)
                self._fail_running(APIError(f"the engine failed: {exc}", status=500))
            except Exception as exc:  # a failing step must not take the server down: fail its sequences
                log.exception("rocmforge: engine step failed")
                self._fail_running(APIError(f"the engine failed: {exc}", status=500))
        self._fail_running(APIError(SHUTTING_DOWN, status=503))
        with self._cond:
            for seq in self.waiting:
                seq.emit(("error", APIError(SHUTTING_DOWN, status=503)))
            self.waiting.clear()

    def _admit(self) -> None:
        """Move waiting sequences into the batch while a slot and their KV blocks are free (holding the lock)."""
        while self.waiting and len(self.running) < self.cache.max_seqs:
            seq = self.waiting[0]
            need = self.blocks_needed(len(seq.prompt_ids) + seq.max_tokens)
            if self.reserved_blocks + need > self.capacity_blocks:
                break  # first come, first served: later requests wait behind it
            self.waiting.popleft()
            if self.time_limit is not None:
                seq.deadline = time.monotonic() + self.time_limit
            seq.slot = self.engine.add_sequence()
            seq.reserved = need
            self.reserved_blocks += need
            self.running.append(seq)

    def _drop_cancelled(self) -> None:
        for seq in [s for s in self.running if s.cancelled]:
            self._finish(seq, "cancelled")

    def _end_overdue(self) -> None:
        """End the sequences past their time limit (their text so far is theirs), and all of them once a drain's
        grace period is over."""
        now = time.monotonic()
        if self._drain_deadline is not None and now >= self._drain_deadline:
            self._fail_running(APIError(f"{SHUTTING_DOWN}: the answer was cut short", status=503))
        for seq in [s for s in self.running if s.deadline is not None and now >= s.deadline]:
            seq.end("time")
            self._finish(seq, "time")

    def _fail_running(self, error: APIError) -> None:
        for seq in list(self.running):
            self._finish(seq, "error", error)

    def _decode(self) -> None:
        batch = [s for s in self.running if s.ids and not s.cancelled]  # prompt read, a token to feed
        if not batch:
            return
        result = self.engine.step([s.ids[-1] for s in batch], [s.slot for s in batch],
                                  [s.position for s in batch], range(len(batch)), "decode", [s.row() for s in batch])
        if self.metrics:
            self.metrics.decode_step(len(batch))
        for row, (seq, token) in enumerate(zip(batch, result.tokens)):
            self._accept(seq, token, result, row)

    def _prefill(self) -> None:
        """One prefill step: the next piece of the first sequence still reading its prompt when that piece is long
        (it runs alone), else the next short pieces of as many sequences as fit in PACK_ROWS rows, in arrival
        order. Pieces are each prompt's own (engine.prefill_pieces), so it comes out as ``rocmforge run`` makes
        it. Steps come in power-of-two numbers of tokens and rows (padding rows write only the cache's padding
        slot): the planner places every call site once per shape, so arbitrary sizes would keep adding shapes."""
        reading = [s for s in self.running if not s.cancelled and s.prefilled < len(s.prompt_ids)]
        if not reading:
            return
        tokens, slots, positions, rows, sampling, done = [], [], [], [], [], []
        for seq in reading:
            start, end = next(p for p in prefill_pieces(len(seq.prompt_ids), self.prefill_chunk)
                              if p[0] == seq.prefilled)
            if tokens and (end - start > PACK_ROWS or len(tokens) + end - start > PACK_ROWS):
                break  # a long piece runs alone; short ones share a step up to PACK_ROWS rows
            tokens += seq.prompt_ids[start:end]
            slots += [seq.slot] * (end - start)
            positions += range(start, end)
            rows.append(len(tokens) - 1)
            sampling.append(seq.row())
            done.append((seq, end == len(seq.prompt_ids), len(rows) - 1))
            seq.prefilled = end
            if end - start > PACK_ROWS:
                break
        pad = (1 << (len(tokens) - 1).bit_length()) - len(tokens)
        tokens, slots, positions = tokens + [0] * pad, slots + [self.cache.pad_slot] * pad, positions + [0] * pad
        pad = (1 << (len(rows) - 1).bit_length()) - len(rows)  # pad by repeating the last row
        rows, sampling = rows + rows[-1:] * pad, sampling + sampling[-1:] * pad
        result = self.engine.step(tokens, slots, positions, rows, "prefill", sampling)
        if self.metrics:
            self.metrics.add("prompt_tokens", len(tokens) - pad)
        for seq, complete, row in done:
            if complete:
                seq.first_token_at = time.monotonic()
                self._accept(seq, result.tokens[row], result, row)

    def _accept(self, seq: Sequence, token: int, result, row: int) -> None:
        """A token sampled for the sequence in row ``row`` of a step: its log-probabilities first when asked for
        (an event of their own, before the token's text), then end the sequence if that token does."""
        if seq.logprobs and token not in seq.eog_ids:
            seq.emit(("logprobs", (token, result.logprobs[row])))
        try:
            finished = seq.accept(token)
        except GrammarError as exc:  # the sampler kept to the mask, so this is a bug: only this sequence fails
            log.error("rocmforge: sequence %d: %s", seq.id, exc)
            self._finish(seq, "error", APIError(f"the engine failed: {exc}", status=500))
            return
        if self.metrics and seq.finish_reason != "eos":  # an end-of-generation token is not generated text
            self.metrics.generated(1)
        if finished:
            self._finish(seq, seq.finish_reason)

    def _finish(self, seq: Sequence, reason: str, error: APIError | None = None) -> None:
        with self._cond:
            seq.finish_reason = reason
            if seq in self.running:
                self.running.remove(seq)
                self.reserved_blocks -= seq.reserved
            seq.reserved = 0
            if seq.slot is not None:
                self.engine.free_sequence(seq.slot)
                seq.slot = None
        if self.metrics and reason == "cancelled":
            self.metrics.add("cancelled")
        seq.emit(("error", error) if error else ("done", reason))
