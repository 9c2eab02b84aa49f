"""One generating sequence and the rules that end it, shared by ``Engine.generate`` (``rocmforge run``) and the
server's batcher, so that both produce the same tokens and text for the same request.

A ``Sequence`` holds the prompt, the tokens generated so far, the penalty history the ``sample`` op sees, the
``(seed, step)`` counter of the seeded draw, the stream decoder and the stop strings. Whoever runs the model
asks a step to sample the sequence's row as ``row()`` says and hands the token to ``accept``, which applies, in this order, the end-of-generation ids, the stop
strings, ``max_tokens`` and the context limit, and says whether the sequence is finished. Text reaches
``on_text`` piece by piece, never a stop string nor the start of one that may still complete.

A sequence may carry a logit bias, a grammar ``constraint`` (engine/grammar.py: its mask goes to the sampler, and
a grammar that is complete ends the sequence with "stop") and ask for its tokens' log-probabilities.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Iterable

from rocmforge_core.engine.sampling import RowSampling, SamplingParams
from rocmforge_core.engine.stop import StopStrings
from rocmforge_core.errors import RocmforgeError


class Sequence:
    def __init__(self, prompt_ids: Iterable[int], *, max_tokens: int, sampling: SamplingParams | None = None,
                 n_ctx: int | None = None, stop: Iterable[str] = (), eog_ids: Iterable[int] = (), decoder=None,
                 on_text: Callable[[str], None] | None = None, logit_bias: Iterable[tuple[int, float]] = (),
                 constraint=None, logprobs: bool = False):
        """``n_ctx``: the context length, past which no token can be placed (None: ``max_tokens`` alone bounds
        the sequence). ``decoder``: the tokenizer's streaming decoder (``add(id) -> str``, ``flush() -> str``);
        without one no text is made and stop strings never match."""
        if max_tokens < 0:
            raise RocmforgeError(f"max_tokens must be >= 0, got {max_tokens}")
        self.prompt_ids = list(prompt_ids)
        self.max_tokens = max_tokens
        self.sampling = (sampling or SamplingParams()).with_seed()
        self.n_ctx = n_ctx
        self.eog_ids = frozenset(eog_ids)
        self.decoder = decoder
        self.on_text = on_text
        self.logit_bias = tuple(logit_bias)
        self.constraint = constraint
        self.logprobs = logprobs
        self.stops = StopStrings(stop)
        n = self.sampling.penalty_last_n
        self.history = deque(self.prompt_ids[-n:] if n else [], maxlen=n)  # the tokens the penalties see
        p = self.sampling
        # whether the history changes any token (a sampler may skip it when not)
        self.penalized = bool(n) and (p.repeat_penalty != 1.0 or p.presence_penalty != 0.0
                                      or p.frequency_penalty != 0.0)
        self.ids: list[int] = []  # generated tokens, without an end-of-generation token
        self.pieces: list[str] = []  # text emitted so far
        self.stop_token: int | None = None  # the end-of-generation token that ended it
        # "eos" (an end-of-generation token), "stop" (a stop string), "length" (max_tokens, also when it is 0),
        # "context"; a server may set its own ("cancelled", "error", "time")
        self.finish_reason = "" if max_tokens else "length"

    @property
    def finished(self) -> bool:
        return bool(self.finish_reason)

    @property
    def step(self) -> int:
        """The seeded draw's counter: tokens generated so far."""
        return len(self.ids)

    @property
    def position(self) -> int:
        """Position of the newest generated token, the next one fed to the model."""
        return len(self.prompt_ids) + len(self.ids) - 1

    def tokens(self, start: int, end: int) -> list[int]:
        """The token ids at positions start .. end-1: the prompt's, then the generated ones."""
        n = len(self.prompt_ids)
        if end <= n:
            return self.prompt_ids[start:end]
        if start >= n:
            return self.ids[start - n:end - n]
        return self.prompt_ids[start:] + self.ids[:end - n]

    def row(self):
        """How a step samples this sequence's next token: its parameters, the draw's counter and, when a penalty
        is on, the recent tokens."""
        return RowSampling(self.sampling, self.step, tuple(self.history) if self.penalized else (),
                           self.constraint.mask if self.constraint is not None else None, self.logit_bias,
                           self.logprobs)

    @property
    def context(self) -> list[int]:
        """Prompt and generated tokens: what a drafter continues."""
        return self.prompt_ids + self.ids

    def draft_room(self) -> int:
        """Draft tokens one verification step may carry: a step of 1 + n rows yields up to n + 1 tokens, which must
        fit max_tokens, and no row may sit at the context's end or past it (as ``accept`` stops there). A sequence
        with a grammar drafts nothing: its mask is known only for the next token, not for the rows after a draft."""
        if self.constraint is not None:
            return 0
        room = self.max_tokens - len(self.ids) - 1
        if self.n_ctx is not None:
            room = min(room, self.n_ctx - 1 - self.position)
        return max(room, 0)

    def draft_rows(self, draft) -> list:
        """How a verification step samples its rows: row j as ``row()`` would once draft[:j] were accepted (the
        draw's counter j further on, draft[:j] in the penalty history), so each row draws the token plain
        decoding would draw there; every row has the sequence's logit bias and log-probabilities request, and row 0
        its grammar's mask (draft_room keeps a constrained sequence to that one row)."""
        n = self.sampling.penalty_last_n
        seen = list(self.history) + list(draft)
        mask = self.constraint.mask if self.constraint is not None else None
        return [RowSampling(self.sampling, self.step + j,
                            tuple(seen[:len(self.history) + j][-n:]) if self.penalized else (),
                            mask if j == 0 else None, self.logit_bias, self.logprobs)
                for j in range(len(draft) + 1)]

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def accept(self, token: int) -> bool:
        """Take a sampled token; True when it ended the sequence (``finish_reason`` says why)."""
        if self.finished:
            raise RocmforgeError(f"the sequence already finished ({self.finish_reason}); it takes no more tokens")
        if token in self.eog_ids:
            self.stop_token = token
            return self.end("eos")
        self.ids.append(token)
        self.history.append(token)
        if self.constraint is not None:
            self.constraint.accept(token)  # the next token's mask, before the next step
        if self.decoder is not None:
            self._emit(self.stops.feed(self.decoder.add(token)))
            if self.stops.stopped:
                return self.end("stop")
        if self.constraint is not None and self.constraint.finished:
            return self.end("stop")
        if len(self.ids) >= self.max_tokens:
            return self.end("length")
        if self.n_ctx is not None and self.position >= self.n_ctx:  # the cache has no room for this token
            return self.end("context")
        return False

    def flush(self) -> None:
        """Emit the decoder's tail and the text held back for the stop strings (``accept`` does it when the
        sequence ends; a stopped sequence has nothing left)."""
        if self.decoder is not None and not self.stops.stopped:
            self._emit(self.stops.feed(self.decoder.flush()) + self.stops.flush())

    def end(self, reason: str) -> bool:
        """Finish for ``reason`` (also a runner's own, e.g. a server's time limit), emitting the text held back."""
        self.finish_reason = reason
        self.flush()
        return True

    def _emit(self, piece: str) -> None:
        if piece:
            self.pieces.append(piece)
            if self.on_text:
                self.on_text(piece)
