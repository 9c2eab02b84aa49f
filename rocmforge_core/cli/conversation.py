"""`rocmforge run -cnv`: a multi-turn chat on the terminal, as llama.cpp's llama-cli -cnv.

Each user message is one line of standard input (a line ending in a backslash continues on the next); the whole
conversation so far is rendered in the chat template and the answer streamed to stdout, then kept as the
assistant's turn. End of input (Ctrl-D) ends the chat. The prompt "> " is shown only when standard input is a
terminal, so that piped input gives clean output."""

from __future__ import annotations

import sys

from rocmforge_core.cli.generation import note_builtin_template, sampling_params, statistics, token_limit
from rocmforge_core.engine import Engine, Model
from rocmforge_core.engine.engine import ContextLengthError, Stats


def read_message(stdin, interactive: bool) -> str | None:
    """The next user message, or None at the end of input."""
    lines = []
    while True:
        if interactive:
            try:
                line = input("> " if not lines else "")
            except EOFError:
                line = None
        else:
            line = stdin.readline()
            line = line.rstrip("\n") if line else None
        if line is None:
            return "\n".join(lines) if lines else None
        if line.endswith("\\"):
            lines.append(line[:-1])
            continue
        lines.append(line)
        return "\n".join(lines)


def converse(args, model: Model, engine: Engine, template: str | None, system: str | None,
             speculation=None) -> int:
    tok = model.tokenizer
    note_builtin_template(tok, template)
    stdin, out = sys.stdin, sys.stdout
    interactive = stdin is not None and stdin.isatty()
    if interactive:
        import readline  # noqa: F401  (line editing and history for input())
    messages = [{"role": "system", "content": system}] if system else []
    sampling = sampling_params(args)
    total = Stats(model.planner.preferred, model.load_seconds)
    while (text := read_message(stdin, interactive)) is not None:
        if not text.strip():
            continue
        messages.append({"role": "user", "content": text})
        ids = tok.encode(tok.apply_chat_template(messages, template=template), add_special=False, special=True)
        try:
            gen = engine.generate(ids, max_tokens=token_limit(args, engine), sampling=sampling, stop=args.stop,
                                  eog_ids=() if args.ignore_eos else tok.eog_ids, decoder=tok.stream(),
                                  on_text=lambda piece: (out.write(piece), out.flush()), speculation=speculation)
        except ContextLengthError:
            print(f"rocmforge: note: the conversation no longer fits the context of {engine.n_ctx} tokens "
                  "(-c to raise it); ending the chat", file=sys.stderr)
            break
        out.write("\n")
        out.flush()
        messages.append({"role": "assistant", "content": gen.text})
        for name in ("prompt_tokens", "cached_tokens", "prefill_s", "generated_tokens", "decode_s", "compile_s",
                     "draft_tokens", "draft_accepted"):
            setattr(total, name, getattr(total, name) + getattr(gen.stats, name))
        total.seed = gen.stats.seed
    else:
        if interactive:  # Ctrl-D leaves the cursor after the "> " prompt
            out.write("\n")
            out.flush()
    print(f"rocmforge: {statistics(total)}", file=sys.stderr)
    return 0
