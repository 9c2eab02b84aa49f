"""`rocmforge logits`: the logits of a prompt, saved as .npy, to check a model against another engine.

Saves the last position's logits f32[vocab], or with --all-positions f32[n_tokens, vocab]; prints the prompt ids
and the top-5 of the last position."""

from __future__ import annotations

import numpy as np

from rocmforge_core.cli.options import add_model_options
from rocmforge_core.cli.run import load_model
from rocmforge_core.engine import Engine


def add_parser(sub) -> None:
    p = sub.add_parser("logits", help="save a prompt's logits as .npy", description=__doc__.split("\n\n")[1])
    add_model_options(p)
    p.add_argument("--prompt", required=True, help="the prompt text (tokenized with the model's BOS rule)")
    p.add_argument("--out", required=True, metavar="FILE.npy", help="where to save the logits")
    p.add_argument("--all-positions", action="store_true", help="save every prompt position, not only the last")
    p.set_defaults(func=run)


def run(args) -> int:
    model = load_model(args)
    try:
        ids = model.tokenizer.encode(args.prompt, add_special=True)
        engine = Engine(model, n_ctx=args.ctx_size)
        slot = engine.add_sequence()
        logits = engine.logits_to_host(engine.prefill(slot, ids, all_logits=args.all_positions).logits)
    finally:
        model.close()
    np.save(args.out, logits if args.all_positions else logits[0])
    last = logits[-1]
    top = np.argsort(last)[::-1][:5]
    print(f"prompt ids: {ids}")
    print(f"saved {'x'.join(map(str, logits.shape if args.all_positions else last.shape))} logits to {args.out}")
    print("top-5 at the last position: " + ", ".join(f"{int(t)} ({last[t]:.3f})" for t in top))
    return 0
