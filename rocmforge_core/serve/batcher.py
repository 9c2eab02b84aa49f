"""The continuous batcher: one thread owns the engine and runs a loop in which requests join and leave the
running batch at every step.

Each iteration (1) frees cancelled sequences, (2) admits waiting requests while a sequence slot is free and the
KV cache can hold their prompt (the part the prefix cache does not already hold), (3) runs one decode step over
every sequence that is generating (one token each, over the paged KV cache, each with its own sampling parameters
and seed; with speculation, its draft tokens too, as more rows of the same sequence: engine/speculative.py), and
(4) runs one prefill step of at most the engine's ``prefill_chunk`` prompt tokens, taken in arrival order from
sequences still reading their prompt, so a long prompt is spread over several iterations instead of stalling
running streams. Each prompt is read in its own pieces (``engine.prefill_pieces``), long ones alone in their step,
short ones sharing a step: exactly the pieces ``rocmforge run`` reads it in, so batching changes no result.
Prefill steps come in power-of-two sizes only, so the set of step shapes stays small and fixed.

Admission takes the blocks of a request's prompt: first the longest chain of cached blocks holding a prefix of it
(engine/kv_cache.py, prefix caching), then new ones for the rest. Sequences then take a block each time they
cross into a new one; when a decode step needs blocks and none is left (cached blocks nobody references are
evicted first), the youngest running sequence is preempted: its blocks are freed (and stay cached), it goes back
to the head of the queue with its generated tokens kept, and once readmitted it prefills prompt + generated
tokens (mostly found in the prefix cache) and samples its next token as the decode step would have. Requests
wait in a bounded queue, and beyond it ``submit`` answers 503. Each request is an engine ``Sequence``
(engine/sequence.py), the one ``Engine.generate`` runs: the same penalty history, ``(seed, step)`` draw and
stopping rules, so a request gives the same tokens whether it runs alone, batched, preempted, or through
``rocmforge run``.

A sequence admitted ``time_limit`` seconds ago ends as if it had reached max_tokens ("length"). ``drain`` (the
server was told to stop) refuses new requests and ends the waiting ones that have not started at once; running
(and preempted) ones may finish for a grace period, after which they end with a 503 error.

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
from rocmforge_core.engine.kv_cache import CacheFullError
from rocmforge_core.engine.speculative import accept_verified, verification
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
    the server's: its event sink, slot, prefill progress, cancellation and timing. ``max_tokens`` is already capped
    so prompt + max_tokens fits the context."""

    def __init__(self, prompt_ids: list[int], max_tokens: int, sampling: SamplingParams, sink: Callable[[tuple], None],
                 stop: Iterable[str] = (), eog_ids: Iterable[int] = (), decoder=None, **rules):
        """``rules``: the engine sequence's logit_bias, constraint and logprobs."""
        super().__init__(prompt_ids, max_tokens=max_tokens, sampling=sampling, stop=stop, eog_ids=eog_ids,
                         decoder=decoder, on_text=lambda text: self.emit(("text", text)), **rules)
        self.sink = sink
        self.id = next(_ids)
        self.slot: int | None = None
        self.reading: list[int] = []  # what its admission prefills: the prompt, and after a preemption the tokens
        self.start = 0  # ... from this position (the prefix found in the cache)
        self.prefilled = 0  # ... up to this one so far
        self.cached_tokens = 0  # prompt tokens the prefix cache held at its first admission
        self.preemptions = 0
        self.cancelled = False
        self.submitted = time.monotonic()
        self.admitted_at: float | None = None  # first admission
        self.deadline: float | None = None  # when the time limit ends it (set at admission)
        self.first_token_at: float | None = None
        self.last_token_at = 0.0

    @property
    def decoding(self) -> bool:
        """Admitted, its prefill done: a token to feed."""
        return self.slot is not None and self.prefilled == len(self.reading)

    def emit(self, event: tuple) -> None:
        try:
            self.sink(event)
        except Exception:  # a sink whose event loop is gone (server shutting down): nobody is listening
            log.debug("sequence %d: event %s dropped", self.id, event[0])


class Embedding:
    """One input of an embeddings request: its token ids, read by the engine thread when a slot and the KV blocks
    of its length are free; ``sink`` gets ``("done", vector)`` or ``("error", APIError)``."""

    def __init__(self, ids: list[int], pooling: str, sink: Callable[[tuple], None]):
        self.ids, self.pooling, self.sink = ids, pooling, sink
        self.cancelled = False

    def emit(self, event: tuple) -> None:
        try:
            self.sink(event)
        except Exception:  # the event loop is gone (server shutting down)
            log.debug("embedding: event %s dropped", event[0])


class Batcher:
    def __init__(self, engine, *, max_queue: int = 64, metrics=None, time_limit: float | None = None,
                 speculation=None):
        """``speculation`` (engine.speculative.Speculation): decode every request by verifying drafts."""
        self.engine = engine
        self.speculation = speculation
        self.time_limit = time_limit
        self.cache = engine.cache
        self.max_queue = max_queue
        self.prefill_chunk = engine.prefill_chunk
        self.metrics = metrics
        self.waiting: deque[Sequence] = deque()
        self.embeddings: deque[Embedding] = deque()  # inputs waiting to be embedded, first come first served
        self.running: list[Sequence] = []  # in admission order: the last is the youngest
        self.preemptions = 0
        self.prefix_queries = 0  # prompt tokens looked up in the prefix cache at admission
        self.prefix_hits = 0  # ... and found there
        self._admit_blocked = -1  # free blocks when the head of the queue last failed to fit (-1: it did not)
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

    def submit(self, *seqs: Sequence) -> None:
        """Queue ``seqs`` (a request's choices: all of them or none), each bounded by the engine's context as
        ``generate`` is; APIError 400 if one can never fit the cache or they can never fit the queue, 503 if the
        queue is full."""
        for seq in seqs:
            need = self.blocks_needed(len(seq.prompt_ids) + seq.max_tokens)
            if need > self.capacity_blocks:
                raise APIError(f"the request needs {need * self.cache.block_size} tokens of KV cache (prompt plus "
                               f"max_tokens) but the server holds {self.capacity_blocks * self.cache.block_size}; "
                               "lower max_tokens", param="max_tokens")
        if len(seqs) > self.max_queue:
            raise APIError(f"'n' is {len(seqs)} but at most {self.max_queue} requests may wait here (--max-queue); "
                           "lower n", param="n")
        live = [seq for seq in seqs if not seq.finished]  # max_tokens 0: nothing to compute
        for seq in live:
            seq.n_ctx = self.engine.n_ctx
        with self._cond:
            if self._stopping or self._drain_deadline is not None:
                raise APIError(SHUTTING_DOWN, status=503)
            if live and len(self.waiting) + len(live) > self.max_queue:
                raise APIError(f"the server is busy: {len(self.waiting)} requests are already waiting; retry "
                               "later", status=503, code="queue_full")
            self.waiting.extend(live)
            self._cond.notify()
        for seq in seqs:
            if seq.finished:
                seq.emit(("done", seq.finish_reason))

    def submit_embeddings(self, jobs: list[Embedding]) -> None:
        """Queue a request's inputs (all or none), counted with the waiting requests against ``max_queue``."""
        for job in jobs:
            need = self.blocks_needed(len(job.ids))
            if need > self.capacity_blocks:
                raise APIError(f"an input of {len(job.ids)} tokens needs more KV cache than the server holds "
                               f"({self.capacity_blocks * self.cache.block_size} tokens)", param="input")
        if len(jobs) > self.max_queue:
            raise APIError(f"'input' holds {len(jobs)} inputs but at most {self.max_queue} may wait here "
                           "(--max-queue); send fewer at a time", param="input")
        with self._cond:
            if self._stopping or self._drain_deadline is not None:
                raise APIError(SHUTTING_DOWN, status=503)
            if len(self.waiting) + len(self.embeddings) + len(jobs) > self.max_queue:
                raise APIError(f"the server is busy: {len(self.waiting) + len(self.embeddings)} requests are "
                               "already waiting; retry later", status=503, code="queue_full")
            self.embeddings.extend(jobs)
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
            for seq in [s for s in self.waiting if s.admitted_at is None]:  # preempted ones may finish too
                self.waiting.remove(seq)
                seq.finish_reason = "error"
                seq.emit(("error", APIError(SHUTTING_DOWN, status=503)))
            self._refuse_embeddings()
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
            return {"waiting": len(self.waiting) + len(self.embeddings), "running": len(self.running),
                    "preemptions": self.preemptions, "prefix_cache_queries": self.prefix_queries,
                    "prefix_cache_hits": self.prefix_hits}

    # -- the engine thread ----------------------------------------------------------------------------------
    def run(self) -> None:
        """The engine loop, until ``stop``; every engine call happens in the thread running it."""
        self._thread = threading.current_thread()
        while True:
            with self._cond:
                while not self._stopping and not self.running and not self.waiting and not self.embeddings:
                    self._cond.wait()
                if self._stopping:
                    break
                self._admit()
                job = self._next_embedding()
            if job is not None:
                self._embed(job)
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
            self._refuse_embeddings()

    def _refuse_embeddings(self) -> None:
        for job in self.embeddings:
            job.emit(("error", APIError(SHUTTING_DOWN, status=503)))
        self.embeddings.clear()

    def _next_embedding(self) -> Embedding | None:
        """The first waiting input when a slot and its KV blocks are free (holding the lock)."""
        while self.embeddings and self.embeddings[0].cancelled:
            self.embeddings.popleft()
        if not self.embeddings or len(self.running) >= self.cache.max_seqs:
            return None
        if self.blocks_needed(len(self.embeddings[0].ids)) > self.cache.allocator.n_free:
            return None
        return self.embeddings.popleft()

    def _embed(self, job: Embedding) -> None:
        """Read one input through the hidden-state program in a slot of its own, freed at once."""
        slot = self.engine.add_sequence()
        try:
            vector = self.engine.embed(slot, job.ids, job.pooling)
        except Exception as exc:  # a failing input must not take the server down
            log.error("rocmforge: embedding failed: %s", exc)
            job.emit(("error", APIError(f"the engine failed: {exc}", status=500)))
            return
        finally:
            self.engine.free_sequence(slot)
        if self.metrics:
            self.metrics.add("prompt_tokens", len(job.ids))
        job.emit(("done", vector))

    def _admit(self) -> None:
        """Move waiting sequences into the batch while a slot is free and the KV cache holds the blocks of what
        they prefill, the cached prefix shared (holding the lock). First come, first served: a request that does
        not fit yet keeps the later ones waiting, and is tried again once more blocks are free."""
        cache = self.cache
        while self.waiting and len(self.running) < cache.max_seqs:
            if cache.allocator.n_free <= self._admit_blocked:
                break
            seq = self.waiting[0]
            reading = seq.prompt_ids + seq.ids  # after a preemption, the generated tokens are read again
            slot = self.engine.add_sequence()
            start = cache.match_prefix(slot, reading)
            try:
                cache.reserve(slot, len(reading))
            except CacheFullError:
                self.engine.free_sequence(slot)
                self._admit_blocked = cache.allocator.n_free
                break
            self._admit_blocked = -1
            self.waiting.popleft()
            now = time.monotonic()
            if seq.admitted_at is None:
                seq.admitted_at, seq.cached_tokens = now, start
                if self.time_limit is not None:
                    seq.deadline = now + self.time_limit
                if self.metrics:
                    self.metrics.queue_time.observe(now - seq.submitted)
            self.prefix_queries += len(reading)
            self.prefix_hits += start
            seq.slot, seq.reading, seq.start, seq.prefilled = slot, reading, start, start
            self.running.append(seq)

    def _preempt(self, seq: Sequence) -> None:
        """Free a running sequence's blocks and send it back to the head of the queue: readmitted, it prefills
        its prompt and the tokens it has generated (their full blocks stay in the prefix cache meanwhile)."""
        with self._cond:
            self.running.remove(seq)
            self.engine.free_sequence(seq.slot)
            seq.slot = None
            seq.preemptions += 1
            self.preemptions += 1
            self.waiting.appendleft(seq)
        log.debug("sequence %d preempted at %d tokens", seq.id, len(seq.prompt_ids) + len(seq.ids))

    def _drop_cancelled(self) -> None:
        for seq in [s for s in self.running if s.cancelled]:
            self._finish(seq, "cancelled")

    def _end_overdue(self) -> None:
        """End the sequences past their time limit (their text so far is theirs), and all of them once a drain's
        grace period is over."""
        now = time.monotonic()
        with self._cond:
            preempted = [s for s in self.waiting if s.admitted_at is not None]
        if self._drain_deadline is not None and now >= self._drain_deadline:
            error = APIError(f"{SHUTTING_DOWN}: the answer was cut short", status=503)
            self._fail_running(error)
            for seq in preempted:
                self._finish(seq, "error", error)
            preempted = []
        for seq in [s for s in self.running + preempted if s.deadline is not None and now >= s.deadline]:
            seq.end("time")
            self._finish(seq, "time")

    def _fail_running(self, error: APIError) -> None:
        for seq in list(self.running):
            self._finish(seq, "error", error)

    def _decode(self) -> None:
        """One decode step over every generating sequence: its newest token, and with speculation its draft tokens
        as more rows of the same sequence (speculative.py), the step's rows bounded by PACK_ROWS (the batch
        invariance bound) but never below one per sequence."""
        batch = [s for s in self.running if s.decoding and not s.cancelled]
        if not batch:
            return
        batch = self._make_room(batch)
        if not batch:
            return
        drafts = self._drafts(batch)
        tokens, slots, positions, sampling = [], [], [], []
        for seq, draft in zip(batch, drafts):
            if not draft:  # one row, as verification(seq, []) makes it
                tokens.append(seq.ids[-1])
                slots.append(seq.slot)
                positions.append(seq.position)
                sampling.append(seq.row())
                continue
            rows = verification(seq, draft)
            tokens += rows.tokens
            slots += [seq.slot] * len(rows.tokens)
            positions += rows.positions
            sampling += rows.sampling
        result = self.engine.step(tokens, slots, positions, range(len(tokens)), "decode", sampling)
        if self.metrics:
            self.metrics.decode_step(len(batch))
        now, commit, sampled, row = time.monotonic(), self.cache.commit, result.tokens, 0
        for seq, draft in zip(batch, drafts):
            if not draft:  # accept_verified of no draft: the row's token, its KV written first
                commit(seq.slot, seq.position + 1, seq.tokens)
                self._accept(seq, sampled[row], now, result, row)
                row += 1
                continue
            written = iter(range(seq.position + 1, seq.position + len(draft) + 2))

            rows = iter(range(row, row + len(draft) + 1))  # the step's row of each token taken

            def take(token, seq=seq, written=written, rows=rows):
                commit(seq.slot, next(written), seq.tokens)  # the KV of the row that sampled it is written now
                return self._accept(seq, token, now, result, next(rows))
            accepted = accept_verified(draft, sampled[row:row + len(draft) + 1], take)
            row += len(draft) + 1
            if self.metrics and draft:
                self.metrics.add("draft_tokens", len(draft))
                self.metrics.add("draft_accepted", accepted)

    def _make_room(self, batch: list[Sequence]) -> list[Sequence]:
        """Preempt the youngest running sequences until the KV cache has a block for each sequence of the decode
        batch that enters a new one; the batch without the preempted."""
        cache, bs = self.cache, self.cache.block_size
        while True:
            need = sum(1 for s in batch if s.position >= cache.blocks_of(s.slot) * bs)
            if need <= cache.allocator.n_free:
                return batch
            victim = self.running[-1]
            self._preempt(victim)
            batch = [s for s in batch if s is not victim]

    def _drafts(self, batch: list[Sequence]) -> list[list[int]]:
        """Each sequence's draft tokens, in arrival order while the step has rows to spare, each within the blocks
        it holds or the one _make_room found for it (speculation never preempts)."""
        spec = self.speculation
        if spec is None:
            return [[] for _ in batch]
        spare, bs = max(PACK_ROWS - len(batch), 0), self.cache.block_size
        requests = []
        for seq in batch:
            held = max(self.cache.blocks_of(seq.slot), seq.position // bs + 1) * bs
            k = min(spec.draft_max, seq.draft_room(), spare, held - seq.position - 1)
            spare -= k
            requests.append((seq.id, seq.context, k))
        return [draft[:k] for draft, (_, _, k) in zip(spec.drafter.propose(requests), requests)]

    def _prefill(self) -> None:
        """One prefill step: the next piece of the first sequence still reading its prompt when that piece is long
        (it runs alone), else the next short pieces of as many sequences as fit in PACK_ROWS rows, in arrival
        order. Pieces are each prompt's own (engine.prefill_pieces), so it comes out as ``rocmforge run`` makes
        it. Steps come in power-of-two numbers of tokens and rows (padding rows write only the cache's padding
        slot): the planner places every call site once per shape, so arbitrary sizes would keep adding shapes."""
        reading = [s for s in self.running if not s.cancelled and s.prefilled < len(s.reading)]
        if not reading:
            return
        tokens, slots, positions, rows, sampling, done = [], [], [], [], [], []
        for seq in reading:
            start, end = next(p for p in prefill_pieces(len(seq.reading), self.prefill_chunk, seq.start)
                              if p[0] == seq.prefilled)
            if tokens and (end - start > PACK_ROWS or len(tokens) + end - start > PACK_ROWS):
                break  # a long piece runs alone; short ones share a step up to PACK_ROWS rows
            tokens += seq.reading[start:end]
            slots += [seq.slot] * (end - start)
            positions += range(start, end)
            rows.append(len(tokens) - 1)
            sampling.append(seq.row())
            done.append((seq, end, len(rows) - 1))
            if end - start > PACK_ROWS:
                break
        pad = (1 << (len(tokens) - 1).bit_length()) - len(tokens)
        tokens, slots, positions = tokens + [0] * pad, slots + [self.cache.pad_slot] * pad, positions + [0] * pad
        pad = (1 << (len(rows) - 1).bit_length()) - len(rows)  # pad by repeating the last row
        rows, sampling = rows + rows[-1:] * pad, sampling + sampling[-1:] * pad
        result = self.engine.step(tokens, slots, positions, rows, "prefill", sampling)
        if self.metrics:
            self.metrics.add("prompt_tokens", len(tokens) - pad)
        now = time.monotonic()
        for seq, end, row in done:
            seq.prefilled = end
            self.cache.commit(seq.slot, end, seq.tokens)
            if end == len(seq.reading):
                self._accept(seq, result.tokens[row], now, result, row)

    def _accept(self, seq: Sequence, token: int, now: float, result, row: int) -> bool:
        """A token sampled for the sequence in row ``row`` of step ``result`` (at ``now``): its log-probabilities
        first when asked for (an event of their own, before the token's text), then end the sequence if that token
        does (True then)."""
        if self.metrics:
            if seq.first_token_at is None:
                self.metrics.ttft.observe(now - seq.submitted)
            else:
                self.metrics.inter_token.observe(now - seq.last_token_at)
        if seq.first_token_at is None:
            seq.first_token_at = now
        seq.last_token_at = now
        if seq.logprobs and token not in seq.eog_ids:
            seq.emit(("logprobs", (token, result.logprobs[row])))
        try:
            finished = seq.accept(token)
        except GrammarError as exc:  # the sampler kept to the mask, so this is a bug: only this sequence fails
            log.error("rocmforge: sequence %d: %s", seq.id, exc)
            self._finish(seq, "error", APIError(f"the engine failed: {exc}", status=500))
            return True
        if self.metrics and seq.finish_reason != "eos":  # an end-of-generation token is not generated text
            self.metrics.generated(1)
        if finished:
            self._finish(seq, seq.finish_reason)
        return finished

    def _finish(self, seq: Sequence, reason: str, error: APIError | None = None) -> None:
        with self._cond:
            seq.finish_reason = reason
            if seq in self.running:
                self.running.remove(seq)
            elif seq in self.waiting:  # preempted
                self.waiting.remove(seq)
            if seq.slot is not None:
                self.engine.free_sequence(seq.slot)
                seq.slot = None
                if self.speculation is not None:
                    self.speculation.drafter.release(seq.id)
        if self.metrics and reason == "cancelled":
            self.metrics.add("cancelled")
        elif self.metrics and error is None:
            self.metrics.e2e.observe(time.monotonic() - seq.submitted)
        seq.emit(("error", error) if error else ("done", reason))
