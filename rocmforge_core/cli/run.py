"""`rocmforge run`: generate text from a prompt, streaming it to stdout as it is produced.

Without --model it runs the default model (SmolLM2-135M-Instruct); without --backend the fast "cpu" backend when
it is installed, else the numpy "reference" backend. The prompt comes from -p, -f FILE or standard input; it is
wrapped in the model's chat template when the model has one (--no-chat: continued as plain text). -cnv chats
turn by turn, reading each user message from standard input. Options follow llama.cpp's llama-cli (-m -p -f -n
-c -t -s --temp -ngl -cnv -sys --chat-template). Sampling follows llama.cpp's chain and defaults; temperature 0
is greedy. --json prints prompt ids, generated ids, text, timings and any kernel fallbacks instead of streaming;
--strict makes a failing kernel an error instead of a fallback to the next candidate."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rocmforge_core.cli.generation import note_builtin_template, sampling_params, statistics, token_limit
from rocmforge_core.cli.options import add_model_options, placement_profile, single_stream_kernels
from rocmforge_core.cli.speculation import add_speculation_options, check_speculation_options, speculation
from rocmforge_core.default_model import default_model_path
from rocmforge_core.engine import Engine, Model, SamplingParams
from rocmforge_core.engine.backend_setup import configure_threads, pick_backend
from rocmforge_core.errors import RocmforgeError

DEFAULTS = SamplingParams()


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="generate text from a prompt", description=__doc__.split("\n\n")[1])
    add_model_options(p)
    source = p.add_mutually_exclusive_group()
    source.add_argument("-p", "--prompt", help="the prompt text (with -cnv: the system message)")
    source.add_argument("-f", "--file", metavar="FILE", help="read the prompt from FILE ('-': standard input)")
    p.add_argument("-cnv", "--conversation", action="store_true",
                   help="interactive chat: each line of standard input is a user message (a line ending in \\ "
                        "continues on the next), answered in the chat template; end with Ctrl-D")
    p.add_argument("--chat", action=argparse.BooleanOptionalAction, default=None,
                   help="wrap the prompt as a user message in the model's chat template (default: when the model "
                        "has one, or --chat-template is given); --no-chat continues the prompt as plain text")
    p.add_argument("--chat-template", metavar="NAME|JINJA",
                   help="use this chat template instead of the model's: a built-in name (chatml, gemma) or the "
                        "Jinja text itself")
    p.add_argument("--chat-template-file", metavar="FILE", help="read the chat template (Jinja) from FILE")
    p.add_argument("-sys", "--system-prompt", "--system", dest="system", help="system message (chat)")
    p.add_argument("-n", "--n-predict", "--max-tokens", dest="max_tokens", type=int, default=128, metavar="N",
                   help="tokens to generate at most; -1: until the model ends its text or the context is full (128)")
    p.add_argument("--temp", "--temperature", dest="temperature", type=float, default=DEFAULTS.temperature,
                   metavar="T", help="0 = greedy (0.8)")
    p.add_argument("--top-k", type=int, default=DEFAULTS.top_k, metavar="K", help="0 = off (40)")
    p.add_argument("--top-p", type=float, default=DEFAULTS.top_p, metavar="P", help="1 = off (0.95)")
    p.add_argument("--min-p", type=float, default=DEFAULTS.min_p, metavar="P", help="0 = off (0.05)")
    p.add_argument("--typical-p", "--typical", dest="typical_p", type=float, default=DEFAULTS.typical_p, metavar="P",
                   help="1 = off (1.0)")
    p.add_argument("--repeat-penalty", type=float, default=DEFAULTS.repeat_penalty, metavar="X", help="1 = off (1.0)")
    p.add_argument("--presence-penalty", type=float, default=0.0, metavar="X")
    p.add_argument("--frequency-penalty", type=float, default=0.0, metavar="X")
    p.add_argument("-s", "--seed", type=int, default=None, metavar="S", help="random seed (random when omitted)")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop at this text (repeatable)")
    p.add_argument("--ignore-eos", action="store_true", help="keep generating after end-of-generation tokens")
    p.add_argument("--json", action="store_true",
                   help="print prompt ids, generated ids, text, timings and kernel fallbacks as JSON")
    p.add_argument("--strict", action="store_true",
                   help="fail when a kernel fails instead of falling back to the next candidate")
    add_speculation_options(p)
    p.set_defaults(func=run)


class LoadProgress:
    """A progress bar on stderr, drawn only when loading takes more than a moment and stderr is a terminal."""
    DELAY = 0.5

    def __init__(self, label: str, stream=None):
        self.label, self.stream = label, stream or sys.stderr
        self.start = time.perf_counter()
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.stream.isatty() or time.perf_counter() - self.start < self.DELAY:
            return
        width = 30
        filled = width * done // total
        self.stream.write(f"\rloading {self.label} [{'#' * filled}{'.' * (width - filled)}] "
                          f"{100 * done // total:3d}%")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()


def load_model(args, path=None) -> Model:
    """The model of -m (or ``path``: a draft model, placed on the same backend without the profile)."""
    configure_threads(args.threads)
    profile = placement_profile(args) if path is None else None
    path = path or args.model or default_model_path()
    progress = LoadProgress(str(path).rsplit("/", 1)[-1])
    try:
        return Model(path, backend=pick_backend(args.backend, profile), profile=profile,
                     progress=progress, strict=getattr(args, "strict", False))
    finally:
        progress.close()


def read_text(path: str, what: str) -> str:
    """A file's text ('-': standard input) without the one trailing newline an editor or echo adds (as llama.cpp's
    -f)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RocmforgeError(f"cannot read the {what} from {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RocmforgeError(f"the {what} file {path} is not UTF-8 text") from None
    return text[:-1] if text.endswith("\n") else text


def prompt_text(args) -> str | None:
    """The prompt: -p, -f FILE, or standard input when it is not a terminal; None for a conversation without one."""
    if args.prompt is not None:
        return args.prompt
    if args.file is not None:
        return read_text(args.file, "prompt")
    if args.conversation:
        return None
    if sys.stdin is None or sys.stdin.isatty():
        raise RocmforgeError("no prompt: give -p TEXT or -f FILE, pipe it on standard input, or chat with -cnv")
    return read_text("-", "prompt")


def chat_template(args) -> str | None:
    """The template asked for on the command line (--chat-template NAME|JINJA, --chat-template-file), else None."""
    from rocmforge_core.tokenizer.chat import BUILTIN_TEMPLATES, builtin_template
    if args.chat_template and args.chat_template_file:
        raise RocmforgeError("give --chat-template or --chat-template-file, not both")
    if args.chat_template_file:
        return read_text(args.chat_template_file, "chat template")
    if args.chat_template is None:
        return None
    if "{{" in args.chat_template or "{%" in args.chat_template:
        return args.chat_template
    if args.chat_template not in BUILTIN_TEMPLATES:
        raise RocmforgeError(f"--chat-template {args.chat_template!r} is neither a built-in template "
                             f"({', '.join(BUILTIN_TEMPLATES)}) nor Jinja text; for a file use --chat-template-file")
    return builtin_template(args.chat_template)


def run(args) -> int:
    single_stream_kernels()
    if args.max_tokens < -1:
        raise RocmforgeError(f"-n takes a number of tokens >= 0, or -1 for no limit, got {args.max_tokens}")
    if args.conversation and (args.json or args.chat is False):
        raise RocmforgeError("-cnv chats in the chat template: it goes with neither --json nor --no-chat")
    prompt = prompt_text(args)
    template = chat_template(args)
    sampling_params(args)  # bad options are refused before the model loads
    check_speculation_options(args)
    model = load_model(args)
    spec = None
    try:
        engine = Engine(model, n_ctx=args.ctx_size)
        spec = speculation(args, model, engine, lambda path: load_model(args, path))
        if args.conversation:
            from rocmforge_core.cli.conversation import converse
            return converse(args, model, engine, template, system=args.system or prompt, speculation=spec)
        return one_shot(args, model, engine, prompt, template, spec)
    finally:
        if spec is not None:
            spec.drafter.close()
        model.close()


def one_shot(args, model: Model, engine: Engine, prompt: str, template: str | None, spec=None) -> int:
    tok = model.tokenizer
    chat = args.chat if args.chat is not None else (template is not None or tok.vocab.chat_template is not None)
    if chat:
        note_builtin_template(tok, template)
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + \
                   [{"role": "user", "content": prompt}]
        prompt_ids = tok.encode(tok.apply_chat_template(messages, template=template), add_special=False,
                                special=True)
    else:
        prompt_ids = tok.encode(prompt, add_special=True)
    out = sys.stdout
    if not args.json and not chat:
        out.write(prompt)
        out.flush()

    def stream(text: str) -> None:
        out.write(text)
        out.flush()

    gen = engine.generate(prompt_ids, max_tokens=token_limit(args, engine), sampling=sampling_params(args),
                          stop=args.stop, eog_ids=() if args.ignore_eos else tok.eog_ids, decoder=tok.stream(),
                          on_text=None if args.json else stream, speculation=spec)
    s = gen.stats
    if args.json:
        print(json.dumps({"model": str(model.path), "backend": s.backend, "prompt_ids": gen.prompt_ids,
                          "generated_ids": gen.ids, "text": gen.text, "finish_reason": gen.finish_reason,
                          "timings": s.as_dict(), "fallbacks": model.planner.events}, indent=2))
    if not gen.ids and args.max_tokens != 0:  # nothing came out: say why, and fail
        piece = tok.decode([gen.stop_token]) if gen.stop_token is not None else ""
        hint = "; --no-chat continues the prompt as text" if chat else "; try --chat"
        fell = f"; kernels replaced during the run: {', '.join(e['kernel'] for e in model.planner.events)}" \
            if model.planner.events else ""
        print(f"rocmforge: error: generated no tokens: the model ended the text at once with its end-of-generation "
              f"token {gen.stop_token} {piece!r}{hint}, or --ignore-eos{fell}", file=sys.stderr)
        return 1
    if args.json:
        return 0
    out.write("\n")
    out.flush()
    if gen.finish_reason == "context":
        print(f"rocmforge: note: stopped at the context limit of {engine.n_ctx} tokens (--ctx-size)", file=sys.stderr)
    print(f"rocmforge: {statistics(s)}", file=sys.stderr)
    return 0
