"""``rocmforge tokenize``."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from rocmforge_core.cli import tokenize
from rocmforge_core.errors import RocmforgeError


def _run(argv, capsys, stdin=None, monkeypatch=None):
    parser = argparse.ArgumentParser(prog="rocmforge")
    tokenize.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["tokenize", *argv])
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    assert args.func(args) == 0
    return capsys.readouterr().out


def test_ids_and_pieces(gemma_path, gemma_tok, capsys):
    assert json.loads(_run(["--model", str(gemma_path), "Hello world"], capsys)) == [2, 9259, 1902]
    assert json.loads(_run(["--model", str(gemma_path), "--no-bos", "Hello world"], capsys)) == [9259, 1902]
    pieces = json.loads(_run(["-m", str(gemma_path), "--json", "Hi <start_of_turn>"], capsys))
    assert pieces[0] == {"id": 2, "piece": "<bos>"} and "<start_of_turn>" not in [p["piece"] for p in pieces]
    special = json.loads(_run(["-m", str(gemma_path), "--special", "--json", "Hi <start_of_turn>"], capsys))
    assert special[-1] == {"id": gemma_tok.token_id("<start_of_turn>"), "piece": "<start_of_turn>"}


def test_byte_pieces_show_their_bytes(testdata, capsys):
    path = testdata / "vocab" / "ggml-vocab-llama-spm.gguf"
    pieces = json.loads(_run(["-m", str(path), "--json", "--no-bos", "\U0001F999"], capsys))
    assert [p.get("bytes") for p in pieces] == [None, "f0", "9f", "a6", "99"]


def test_default_model_and_jsonl(smollm2_path, smollm2_tok, capsys, monkeypatch):
    out = _run(["--jsonl", "--special"], capsys, stdin='"Hello world"\n\n"<|im_end|>"\n', monkeypatch=monkeypatch)
    assert [json.loads(line) for line in out.splitlines()] == [[19556, 905], [smollm2_tok.token_id("<|im_end|>")]]


@pytest.mark.parametrize("argv, stdin, message", [
    (["--jsonl", "text"], None, "drop the TEXT"),
    ([], None, "give the TEXT"),
    (["--jsonl"], "not json\n", "line 1 is not JSON"),
    (["--jsonl"], "[1]\n", "not a string"),
    (["--model", "/no/such/file.gguf", "x"], None, "cannot open"),
])
def test_errors(smollm2_path, capsys, monkeypatch, argv, stdin, message):
    with pytest.raises(RocmforgeError, match=message):
        _run(argv, capsys, stdin=stdin, monkeypatch=monkeypatch)
