"""`rocmforge run` and `rocmforge logits` end to end on the default model (SmolLM2), reference backend,
checked against llama.cpp's f32deq reference for the short prompt."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rocmforge_core.cli import main


@pytest.fixture(scope="module")
def short_ref(testdata):
    return json.loads((testdata / "reference" / "smollm2_135m_f32deq.json").read_text())["prompts"]["short"]


def test_run_json_reproduces_llama_cpp_greedy(smollm2_path, short_ref, capsys):
    n = 8
    assert all(t[0][1] - t[1][1] > 0.06 for t in short_ref["greedy_step_top5"][:n])  # no tie within tolerance
    rc = main(["run", "--prompt", short_ref["text"], "--no-chat", "--temperature", "0", "--max-tokens", str(n),
               "--backend", "reference", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["prompt_ids"] == short_ref["prompt_ids"]
    assert out["generated_ids"] == short_ref["greedy_ids"][:n]
    assert short_ref["greedy_text"].startswith(out["text"])
    assert out["timings"]["generated_tokens"] == n and out["timings"]["decode_tokens_per_s"] > 0
    assert out["backend"] == "reference" and out["finish_reason"] == "length"


def test_run_streams_prompt_and_continuation(smollm2_path, short_ref, capsys):
    rc = main(["run", "--model", str(smollm2_path), "--prompt", short_ref["text"], "--no-chat", "--temperature",
               "0", "--max-tokens", "3", "--backend", "reference", "--stop", "\n"])
    captured = capsys.readouterr()
    assert rc == 0
    assert captured.out.startswith(short_ref["text"] + " Paris")
    assert "t/s" in captured.err and "reference" in captured.err


def test_chat_mode_uses_the_chat_template(smollm2_path, capsys):
    rc = main(["run", "--prompt", "What is the capital of France?", "--chat", "--temperature", "0",
               "--max-tokens", "12", "--backend", "reference", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["prompt_ids"][0] == 1  # <|im_start|> of the ChatML template, parsed as a special token
    assert "Paris" in out["text"] and out["finish_reason"] == "eos"  # ends its turn with <|im_end|>


def test_logits_command_matches_reference(smollm2_path, short_ref, testdata, tmp_path, capsys):
    out = tmp_path / "short.npy"
    rc = main(["logits", "--model", str(smollm2_path), "--prompt", short_ref["text"], "--out", str(out),
               "--backend", "reference"])
    assert rc == 0 and str(short_ref["prompt_ids"]) in capsys.readouterr().out
    ours = np.load(out)
    ref = np.load(testdata / "reference" / "smollm2_135m_f32deq.logits_short.f16.npy").astype(np.float32)
    assert ours.shape == ref.shape and np.abs(ours - ref).max() < 0.03
    rc = main(["logits", "--model", str(smollm2_path), "--prompt", short_ref["text"], "--out", str(out),
               "--backend", "reference", "--all-positions"])
    assert rc == 0 and np.load(out).shape == (len(short_ref["prompt_ids"]), ref.shape[0])


def test_user_errors_are_one_sentence(tmp_path, capsys):
    assert main(["run", "--model", str(tmp_path / "none.gguf"), "--prompt", "x"]) == 1
    assert "none.gguf" in capsys.readouterr().err
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 8)
    assert main(["run", "--model", str(bad), "--prompt", "x", "--backend", "reference"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rocmforge: error: ") and "Traceback" not in err
    assert main(["run", "--model", str(bad), "--prompt", "x", "--backend", "nope"]) == 1



@pytest.mark.parametrize("option,value,message", [
    ("--temperature", "nan", "--temperature must be a finite number in [0, 2], got nan"),
    ("--temperature", "-1", "--temperature must be a finite number in [0, 2], got -1.0"),
    ("--temperature", "1e9", "--temperature must be a finite number in [0, 2], got 1000000000.0"),
    ("--temperature", "1e400", "--temperature must be a finite number in [0, 2], got inf"),
    ("--top-p", "0", "--top-p must be a finite number in (0, 1], got 0.0"),
    ("--repeat-penalty", "inf", "--repeat-penalty must be a finite number in (0, 1000000], got inf"),
    ("--max-tokens", "-3", "-n takes a number of tokens >= 0, or -1 for no limit, got -3"),
])
def test_sampling_options_are_checked_before_loading_as_the_server_checks_them(tmp_path, capsys, option, value,
                                                                                message):
    # the model does not exist: the options are refused before anything is loaded
    assert main(["run", "--model", str(tmp_path / "none.gguf"), "--prompt", "x", option, value]) == 1
    assert capsys.readouterr().err == f"rocmforge: error: {message}\n"


def test_threads_option_reaches_host_backends(capsys):
    from rocmforge_core.cli import main
    from rocmforge_core.cli.run import configure_threads
    from rocmforge_core.registry import get_registry
    assert main(["run", "--threads", "0", "--prompt", "x"]) == 1
    assert "--threads must be at least 1" in capsys.readouterr().err
    cpu = get_registry().backends.get("cpu")
    if cpu is None:
        pytest.skip("the cpu backend (rocmforge-cpu-simd) is not installed")
    try:
        configure_threads(1)
        assert cpu.threads == 1
    finally:
        configure_threads(None)


def test_a_run_that_generates_no_tokens_fails_and_says_why(smollm2_path, monkeypatch, capsys):
    """Every token an end-of-generation token: the first one ends the text, and run exits 1 naming it."""
    from rocmforge_core.tokenizer import Tokenizer
    monkeypatch.setattr(Tokenizer, "eog_ids", property(lambda self: frozenset(range(self.n_vocab))))
    rc = main(["run", "--model", str(smollm2_path), "--prompt", "Hello", "--no-chat", "--temperature", "0",
               "--max-tokens", "4", "--backend", "reference"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "generated no tokens" in err and "end-of-generation token" in err and "--chat" in err
