"""Speculative decoding against plain decoding on repetitive prompts: decode tokens/s, draft acceptance, steps.

  .venv/bin/python scripts/bench-speculative.py [-m FILE] [--backend cpu|hip] [-md DRAFT] [-n 128] [--draft-max 4,8]

Each configuration runs once to trace, place and compile its step shapes, then --repetitions times measured
(the median's figures are printed). Greedy, so every configuration must give the plain tokens: a difference is
printed (on cpu it can happen at near ties, engine/speculative.py). Figures go to docs/PERF.md."""

from __future__ import annotations

import argparse
import statistics

from rocmforge_core.default_model import default_model_path
from rocmforge_core.engine import Engine, Model
from rocmforge_core.engine.draft_model import DraftModel
from rocmforge_core.engine.sampling import GREEDY
from rocmforge_core.engine.speculative import PromptLookup, Speculation

PROMPTS = {
    "code": ("Add type hints and a docstring to each function, keeping the code otherwise unchanged:\n\n"
             "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\n"
             "def mul(a, b):\n    return a * b\n\ndef div(a, b):\n    return a / b\n"),
    "list": ("Repeat this list exactly, numbering each line:\n"
             "apples, pears, plums, cherries, grapes, lemons, limes, oranges, peaches, apricots, figs, dates"),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-m", "--model", default=None)
    p.add_argument("-md", "--model-draft", default=None)
    p.add_argument("--backend", default="cpu")
    p.add_argument("-n", type=int, default=128)
    p.add_argument("--draft-max", default="4,8")
    p.add_argument("--lookup-ngram", type=int, default=3)
    p.add_argument("--repetitions", type=int, default=2)
    args = p.parse_args()
    model = Model(args.model or default_model_path(), backend=args.backend)
    engine = Engine(model, n_ctx=1024)
    tok = model.tokenizer
    draft = None
    if args.model_draft:
        draft = DraftModel(Engine(Model(args.model_draft, backend=args.backend), n_ctx=1024), model)
    configs = [("plain", None)]
    for k in map(int, args.draft_max.split(",")):
        configs.append((f"lookup n<={args.lookup_ngram} k={k}", Speculation(PromptLookup(args.lookup_ngram), k)))
        if draft is not None:
            configs.append((f"draft model k={k}", Speculation(draft, k)))
    print(f"{model.path.name} on {args.backend}, {args.n} tokens, greedy")
    print("| prompt (tokens in + out) | decoding | tokens/s | vs plain | draft tokens accepted | decode steps |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, text in PROMPTS.items():
        messages = [{"role": "user", "content": text}]
        ids = tok.encode(tok.apply_chat_template(messages), add_special=False, special=True)
        base_ids, base_rate = None, None
        for label, spec in configs:
            runs = [engine.generate(ids, max_tokens=args.n, sampling=GREEDY, eog_ids=tok.eog_ids, speculation=spec)
                    for _ in range(args.repetitions + 1)][1:]
            rate = statistics.median(r.stats.decode_tokens_per_s for r in runs)
            s = runs[0].stats
            if base_ids is None:
                base_ids, base_rate = runs[0].ids, rate
            same = "" if runs[0].ids == base_ids else " (tokens differ from plain!)"
            accepted = f"{s.draft_accepted}/{s.draft_tokens} ({100 * s.acceptance:.0f}%)" if s.draft_tokens else "-"
            print(f"| {name} ({len(ids)} + {s.generated_tokens}) | {label}{same} | {rate:.1f} | "
                  f"{rate / base_rate:.2f}x | {accepted} | {s.decode_steps} |")
    model.close()
    if draft is not None:
        draft.close()


if __name__ == "__main__":
    main()
