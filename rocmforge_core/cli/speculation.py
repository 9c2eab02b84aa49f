"""Speculative decoding options of `run` and `serve`: prompt lookup (--lookup-ngram), a draft model (-md, as
llama.cpp's) and the draft tokens per step (--draft-max, as llama.cpp's), turned into an engine Speculation."""

from __future__ import annotations

from pathlib import Path

from rocmforge_core.engine.speculative import DRAFT_MAX, LOOKUP_NGRAM, Speculation
from rocmforge_core.errors import RocmforgeError


def add_speculation_options(p) -> None:
    group = p.add_argument_group("speculative decoding (the same tokens, fewer steps: docs/ENGINE.md)")
    how = group.add_mutually_exclusive_group()
    how.add_argument("--lookup-ngram", type=int, nargs="?", const=LOOKUP_NGRAM, default=None, metavar="N",
                     help="draft by prompt lookup: the tokens that followed the latest earlier occurrence of the "
                          f"last N tokens (N down to 1; {LOOKUP_NGRAM} when N is left out) in the prompt and output")
    how.add_argument("-md", "--model-draft", metavar="FILE",
                     help="draft with this small GGUF model of the same vocabulary (greedy, own KV cache)")
    group.add_argument("--draft-max", "--draft", "--draft-n", dest="draft_max", type=int, default=None,
                       metavar="N", help=f"draft tokens verified per step at most ({DRAFT_MAX})")


def check_speculation_options(args) -> None:
    """Bad speculation options are refused before any model loads."""
    if args.lookup_ngram is not None and args.lookup_ngram < 1:
        raise RocmforgeError(f"--lookup-ngram takes an n-gram size >= 1, got {args.lookup_ngram}")
    if args.draft_max is not None:
        if args.lookup_ngram is None and args.model_draft is None:
            raise RocmforgeError("--draft-max needs a drafter: --lookup-ngram or -md FILE")
        if args.draft_max < 1:
            raise RocmforgeError(f"--draft-max takes a number of tokens >= 1, got {args.draft_max}")
    if args.model_draft is not None and not Path(args.model_draft).is_file():
        raise RocmforgeError(f"the draft model file {args.model_draft} does not exist")


def speculation(args, model, engine, load) -> Speculation | None:
    """The Speculation the options ask for (None: plain decoding); ``load(path)`` loads a draft model as the
    target was loaded."""
    from rocmforge_core.engine.draft_model import speculation_for
    return speculation_for(model, engine, lookup_ngram=args.lookup_ngram, model_draft=args.model_draft,
                           draft_max=args.draft_max, load=load)
