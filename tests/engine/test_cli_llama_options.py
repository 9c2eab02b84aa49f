"""The command line as llama.cpp users type it: short options, prompts from files and standard input, the -cnv
chat, --chat-template, -ngl, --debug after the command, `python -m rocmforge`, and the install extras."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rocmforge_core import __version__
from rocmforge_core.cli import main
from rocmforge_core.cli.options import placement_profile
from rocmforge_core.engine import Engine
from rocmforge_core.errors import RocmforgeError
from rocmforge_core.ops import no, yes
from rocmforge_core.registry import get_registry
from rocmforge_core.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
TEXT = "The capital of France is"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_json(capsys, *argv) -> dict:
    assert main(["run", *argv, "--backend", "reference", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_short_options_are_the_long_ones(smollm2_path, capsys):
    short = run_json(capsys, "-m", str(smollm2_path), "-p", TEXT, "--no-chat", "--temp", "0", "-n", "3", "-c", "64",
                     "-t", "1", "-s", "7")
    long = run_json(capsys, "--model", str(smollm2_path), "--prompt", TEXT, "--no-chat", "--temperature", "0",
                    "--max-tokens", "3", "--ctx-size", "64", "--threads", "1", "--seed", "7")
    assert short["generated_ids"] == long["generated_ids"] and len(short["generated_ids"]) == 3
    assert short["timings"]["seed"] == 7


def test_prompt_from_a_file_and_from_standard_input(smollm2_path, tmp_path, monkeypatch, capsys):
    given = run_json(capsys, "-p", TEXT, "--no-chat", "--temp", "0", "-n", "2")
    path = tmp_path / "prompt.txt"
    path.write_text(TEXT + "\n")  # one trailing newline is dropped, as llama.cpp's -f does
    from_file = run_json(capsys, "-f", str(path), "--no-chat", "--temp", "0", "-n", "2")
    monkeypatch.setattr(sys, "stdin", io.StringIO(TEXT + "\n"))
    from_stdin = run_json(capsys, "--no-chat", "--temp", "0", "-n", "2")
    assert given["prompt_ids"] == from_file["prompt_ids"] == from_stdin["prompt_ids"]
    assert given["generated_ids"] == from_stdin["generated_ids"]


def test_no_prompt_on_a_terminal_is_one_sentence(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sys, "stdin", Tty())
    assert main(["run", "--backend", "reference"]) == 1
    assert "no prompt: give -p TEXT or -f FILE" in capsys.readouterr().err
    assert main(["run", "-f", str(tmp_path / "missing.txt")]) == 1
    assert "cannot read the prompt from" in capsys.readouterr().err
    assert main(["run", "-p", "x", "-n", "-2"]) == 1
    assert "-n takes a number of tokens >= 0, or -1" in capsys.readouterr().err


def test_conversation_keeps_the_turns(smollm2_path, monkeypatch, capsys):
    prompts = []
    generate = Engine.generate

    def recording(self, prompt_ids, **kw):
        prompts.append(list(prompt_ids))
        return generate(self, prompt_ids, **kw)

    monkeypatch.setattr(Engine, "generate", recording)
    monkeypatch.setattr(sys, "stdin", io.StringIO("What is the capital of France?\n\nAnd of\\\n Germany?\n"))
    rc = main(["run", "-cnv", "-p", "Answer briefly.", "--temp", "0", "-n", "12", "--backend", "reference"])
    out, err = capsys.readouterr()
    assert rc == 0 and len(prompts) == 2  # the empty line is skipped; "\" joins two lines into one message
    answer = out.splitlines()[0]
    second = Tokenizer.from_gguf(smollm2_path).decode(prompts[1], special=True)
    assert answer and "Answer briefly." in second and answer in second and "And of\n Germany?" in second
    assert prompts[1][:len(prompts[0])] == prompts[0]  # the first turn, then its answer, then the new message
    assert "t/s" in err


def test_chat_template_override(smollm2_path, tmp_path, capsys):
    jinja = "{{ messages[-1]['content'] }}?"
    inline = run_json(capsys, "-p", TEXT, "--chat-template", jinja, "-n", "0")
    path = tmp_path / "template.jinja"
    path.write_text(jinja)
    from_file = run_json(capsys, "-p", TEXT, "--chat-template-file", str(path), "-n", "0")
    rendered = Tokenizer.from_gguf(smollm2_path).encode(TEXT + "?", add_special=False, special=True)
    assert inline["prompt_ids"] == from_file["prompt_ids"] == rendered
    chatml = run_json(capsys, "-p", TEXT, "--chat-template", "chatml", "-n", "0")
    assert chatml["prompt_ids"][0] == 1  # <|im_start|>
    assert main(["run", "-p", TEXT, "--chat-template", "vicuna"]) == 1
    assert "neither a built-in template (chatml, gemma) nor Jinja text" in capsys.readouterr().err


def test_debug_after_the_command_shows_the_traceback(tmp_path):
    missing = str(tmp_path / "none.gguf")
    assert main(["run", "-m", missing, "-p", "x"]) == 1
    for argv in (["run", "-m", missing, "-p", "x", "--debug"], ["--debug", "run", "-m", missing, "-p", "x"]):
        with pytest.raises(RocmforgeError):
            main(argv)


def test_python_dash_m_rocmforge():
    out = subprocess.run([sys.executable, "-m", "rocmforge", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == f"rocmforge {__version__}"


def ngl_args(n, profile=None):
    return argparse.Namespace(gpu_layers=n, profile=profile)


@pytest.fixture
def gpu():
    backend = get_registry().backends.get("hip")
    if backend is None:
        pytest.skip("the hip plugin (rocmforge-rocm-hip) is not installed")
    return backend


def test_ngl_is_a_partial_offload_profile(gpu, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(gpu, "available", lambda: yes())
    profile = placement_profile(ngl_args(4))
    assert profile.gpu_layers == 4 and profile.gpu_backend == "hip" and profile.offload_where == "-ngl 4"
    rules = tmp_path / "rules.yaml"
    rules.write_text("default: cpu\nops:\n  sample: cpu\n")
    merged = placement_profile(ngl_args(2, str(rules)))
    assert merged.gpu_layers == 2 and "sample" in merged.ops
    budget = tmp_path / "budget.yaml"
    budget.write_text("gpu_memory: 1 GiB\n")
    with pytest.raises(RocmforgeError, match="both choose the offloaded layers"):
        placement_profile(ngl_args(2, str(budget)))
    with pytest.raises(RocmforgeError, match="-ngl takes a number of layers >= 0"):
        placement_profile(ngl_args(-1))
    assert placement_profile(ngl_args(None, "x.yaml")) == "x.yaml"


def test_ngl_without_a_usable_gpu_is_ignored_with_a_note(gpu, monkeypatch, smollm2_path, capsys):
    monkeypatch.setattr(gpu, "available", lambda: no("no device in this test"))
    assert placement_profile(ngl_args(99)) is None
    assert "-ngl 99 ignored: backend hip cannot run here (no device in this test)" in capsys.readouterr().err
    out = run_json(capsys, "-p", TEXT, "--no-chat", "--temp", "0", "-n", "1", "-ngl", "99")
    assert out["backend"] == "reference"


def test_bench_takes_llama_bench_options(capsys):
    rc = main(["bench", "--synthetic", "llama-tiny:Q8_0", "-p", "8", "-n", "4", "-r", "1", "-t", "1", "-c", "32",
               "--backend", "reference", "--json"])
    assert rc == 0
    assert [r["test"] for r in json.loads(capsys.readouterr().out)["results"]] == ["pp8", "tg4"]
    assert main(["bench", "--synthetic", "llama-tiny:Q8_0", "-p", "64", "-n", "4", "-c", "32"]) == 1
    assert "-c 32 cannot hold the tests' 64 tokens" in capsys.readouterr().err


def test_extras_install_a_backend_with_the_formats():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    plugins = {tomllib.loads(p.read_text())["project"]["name"]
               for p in [*ROOT.glob("plugins/*/pyproject.toml"), *ROOT.glob("plugins/formats/*/pyproject.toml")]}
    formats = {p for p in plugins if p.startswith("rocmforge-format-")}
    assert set(extras["formats"]) == formats
    assert "rocmforge-cpu-simd" in extras["cpu"] and "rocmforge[formats]" in extras["cpu"]
    assert "rocmforge-rocm-hip[amd]" in extras["hip"] and "rocmforge[formats]" in extras["hip"]
    assert extras["all"] == ["rocmforge[cpu,hip,serve]"]
    named = {d.split("[")[0] for e in extras.values() for d in e if d.startswith("rocmforge-")}
    assert named <= plugins
