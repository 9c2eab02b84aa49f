"""What `rocmforge run` and its -cnv chat share: sampling parameters from the options, the token limit, the note
on a built-in chat template, and the statistics line."""

from __future__ import annotations

import sys

from rocmforge_core.engine import Engine, SamplingParams
from rocmforge_core.engine.sampling import SamplingError


def sampling_params(args) -> SamplingParams:
    """The sampling options, checked as the server checks a request's (``run`` calls this before the model loads)."""
    return checked_options(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                           typical_p=args.typical_p, repeat_penalty=args.repeat_penalty,
                           presence_penalty=args.presence_penalty, frequency_penalty=args.frequency_penalty,
                           seed=args.seed)


def checked_options(**values) -> SamplingParams:
    """SamplingParams of command-line options, a bad value's error naming the option (--top-k) and not the field."""
    try:
        return SamplingParams(**values)
    except SamplingError as exc:  # the message starts with the field's name
        flag = "--" + exc.field.replace("_", "-")
        raise SamplingError(exc.field, flag + str(exc).removeprefix(exc.field)) from None


def note_builtin_template(tok, template: str | None) -> None:
    if template is None and tok.vocab.chat_template is None:
        print("rocmforge: note: the model has no chat template; using a built-in one for its architecture "
              "(--chat-template to choose)", file=sys.stderr)


def token_limit(args, engine: Engine) -> int:
    """-n as generate's max_tokens (-1: as many as the context holds)."""
    return engine.n_ctx if args.max_tokens == -1 else args.max_tokens


def statistics(s) -> str:
    """One line of a generation's timings; kernel compilation (first use on this machine) apart from the rest."""
    compiled = f"; compile {s.compile_s:.2f} s (first use, cached now)" if s.compile_s >= 0.01 else ""
    cached = f" ({s.cached_tokens} from the prefix cache)" if s.cached_tokens else ""
    drafted = (f"; draft tokens accepted {s.draft_accepted}/{s.draft_tokens} ({100 * s.acceptance:.0f}%)"
               if s.draft_tokens else "")
    return (f"{s.backend}: load {s.load_s:.2f} s{compiled}; prompt {s.prompt_tokens} tokens{cached} in "
            f"{s.prefill_s:.2f} s ({s.prefill_tokens_per_s:.1f} t/s); generated {s.generated_tokens} tokens in "
            f"{s.decode_s:.2f} s ({s.decode_tokens_per_s:.1f} t/s){drafted}; seed {s.seed}")
