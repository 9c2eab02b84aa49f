"""A draft model for speculative decoding (speculative.py): a second, small Engine of the same vocabulary that
proposes tokens greedily, keeping each sequence's K/V in its own cache between calls."""

from __future__ import annotations

from typing import Callable

from rocmforge_core.engine.engine import Engine, prefill_pieces
from rocmforge_core.engine.speculative import DRAFT_MAX, PromptLookup, Speculation
from rocmforge_core.errors import RocmforgeError


def speculation_for(model, engine, *, lookup_ngram: int | None = None, model_draft=None,
                    draft_max: int | None = None, load: Callable | None = None) -> Speculation | None:
    """The Speculation `run`'s and `serve`'s options ask for (None: plain decoding): prompt lookup of n-grams up
    to ``lookup_ngram``, or the draft model file ``model_draft``, loaded by ``load(path)`` (default: on the
    target's backend) with an Engine of the target's context and sequence slots."""
    k = draft_max or DRAFT_MAX
    if lookup_ngram is not None:
        return Speculation(PromptLookup(lookup_ngram), k)
    if model_draft is None:
        return None
    if load is None:
        from rocmforge_core.engine.model import Model
        draft = Model(model_draft, backend=model.planner.preferred)
    else:
        draft = load(model_draft)
    try:
        trained = draft.config.context_length
        draft_engine = Engine(draft, n_ctx=min(engine.n_ctx, trained) if trained else engine.n_ctx,
                              max_seqs=engine.cache.max_seqs, prefill_chunk=engine.prefill_chunk)
        return Speculation(DraftModel(draft_engine, model), k)
    except Exception:
        draft.close()
        raise


class DraftModel:
    """A small model of the same vocabulary drafting greedily: its Engine keeps each sequence's K/V from one call
    to the next, so a call reads only the tokens it has not seen (those accepted since, or a new prompt) and then
    decodes k tokens, one batched step per token for all sequences."""

    def __init__(self, engine, target):
        """``engine``: the draft model's (as many sequence slots as the target's); ``target``: the target's Model."""
        draft, model = engine.model, target
        mine, theirs = (list(m.metadata.get("tokenizer.ggml.tokens") or ()) for m in (draft, model))
        if draft.config.vocab_size != model.config.vocab_size or mine != theirs:
            raise RocmforgeError(f"the draft model {draft.path.name} has another vocabulary than {model.path.name} "
                                 f"({draft.config.vocab_size} tokens, {model.config.vocab_size}): a draft must "
                                 "share the model's tokenizer")
        self.engine = engine
        self._slots: dict[int, int] = {}  # key -> the draft engine's slot
        self._seen: dict[int, list[int]] = {}  # key -> the tokens whose K/V the draft cache holds, by position

    def propose(self, requests):
        eng = self.engine
        drafts: list[list[int]] = [[] for _ in requests]
        decoding = []  # indices of the requests drafting by decode steps: (index, key, context, k)
        for i, (key, context, k) in enumerate(requests):
            k = min(k, eng.n_ctx - len(context) + 1)  # the draft's own context bounds it too
            if k < 1:
                continue
            if key not in self._slots:
                self._slots[key] = eng.add_sequence()
            seen = self._seen.get(key, [])
            common = next((j for j, (a, b) in enumerate(zip(seen, context)) if a != b), min(len(seen), len(context)))
            start = min(common, len(context) - 1)  # at least the newest token is fed: its logits give the draft
            if len(context) - start > 1:  # a prompt, or several accepted tokens: read them as prefill pieces
                new = context[start:]
                slot = self._slots[key]
                for a, b in prefill_pieces(len(new), eng.prefill_chunk):
                    result = eng.step(new[a:b], [slot] * (b - a), range(start + a, start + b), [b - a - 1],
                                      "prefill")
                drafts[i].append(result.tokens[0])
            decoding.append((i, key, context, k))
        while True:
            rows = [(i, key, context) for i, key, context, k in decoding if len(drafts[i]) < k]
            if not rows:
                break
            tokens = [drafts[i][-1] if drafts[i] else context[-1] for i, _, context in rows]
            positions = [len(context) - 1 + len(drafts[i]) for i, _, context in rows]
            result = eng.step(tokens, [self._slots[key] for _, key, _ in rows], positions, range(len(rows)),
                              "decode")
            for (i, _, _), token in zip(rows, result.tokens):
                drafts[i].append(token)
        for i, key, context, _ in decoding:
            self._seen[key] = list(context) + drafts[i][:-1]  # the last draft token was never fed
        return drafts

    def release(self, key: int) -> None:
        slot = self._slots.pop(key, None)
        self._seen.pop(key, None)
        if slot is not None:
            self.engine.free_sequence(slot)

    def close(self) -> None:
        self.engine.model.close()
