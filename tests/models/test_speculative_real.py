"""Speculative decoding on the real models, cpu backend, through `rocmforge run --json`: greedy output with
prompt lookup and with a draft model equals plain decoding's on a repetitive prompt (code), and the draft
counters are reported. The cpu backend's products round differently for one row and for several (about 1e-5 of
the logits, engine/speculative.py), so on cpu this equality holds where no two top candidates are that close, as
in these prompts; on hip it holds bit for bit (tests/hip/test_gpu.py)."""

from __future__ import annotations

import json

import pytest

from rocmforge_core.cli import main

pytestmark = pytest.mark.slow

CODE = ("def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\n"
        "def mul(a, b):\n    return a * b\n\ndef div(a, b):\n")


def run_json(capsys, model, *options) -> dict:
    assert main(["run", "-m", str(model), "-p", CODE, "--no-chat", "--temp", "0", "-n", "40", "--backend", "cpu",
                 "--json", *options]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("which", ["smollm2", "gemma"])
def test_greedy_run_with_prompt_lookup_equals_plain(which, smollm2_path, gemma_path, capsys):
    model = smollm2_path if which == "smollm2" else gemma_path
    plain = run_json(capsys, model)
    look = run_json(capsys, model, "--lookup-ngram", "--draft-max", "6")
    assert look["generated_ids"] == plain["generated_ids"] and look["text"] == plain["text"]
    t = look["timings"]
    assert t["draft_tokens"] > 0 and 0 < t["draft_accepted"] <= t["draft_tokens"]
    assert t["decode_steps"] == t["generated_tokens"] - 1 - t["draft_accepted"]
    assert plain["timings"]["draft_tokens"] == 0


def test_greedy_run_with_a_draft_model_equals_plain(smollm2_path, capsys):
    plain = run_json(capsys, smollm2_path)
    drafted = run_json(capsys, smollm2_path, "-md", str(smollm2_path), "--draft-max", "4")
    assert drafted["generated_ids"] == plain["generated_ids"]
    assert drafted["timings"]["acceptance"] > 0.8  # the model drafting for itself (prefill and decode round apart)


@pytest.mark.parametrize("options,message", [
    (["--draft-max", "4"], "--draft-max needs a drafter: --lookup-ngram or -md FILE"),
    (["--lookup-ngram", "0"], "--lookup-ngram takes an n-gram size >= 1, got 0"),
    (["--lookup-ngram", "--draft-max", "0"], "--draft-max takes a number of tokens >= 1, got 0"),
    (["-md", "/no/such.gguf"], "the draft model file /no/such.gguf does not exist"),
])
def test_speculation_options_are_checked_before_loading(tmp_path, capsys, options, message):
    assert main(["run", "--model", str(tmp_path / "none.gguf"), "-p", "x", *options]) == 1
    assert capsys.readouterr().err == f"rocmforge: error: {message}\n"
