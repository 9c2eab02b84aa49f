"""`rocmforge serve` as users run it: a subprocess listening on a free port, stopped with SIGINT."""

from __future__ import annotations

import subprocess

import httpx

from conftest import CLI, serve_process


def test_serve_answers_and_stops_on_sigint(tiny_chat_model):
    with serve_process("--model", str(tiny_chat_model), "--backend", "reference", "--parallel", "2") as (proc, url):
        assert proc.poll() is None, proc.stderr.read()
        r = httpx.post(f"{url}/v1/chat/completions", timeout=30,
                       json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["role"] == "assistant"
    assert proc.returncode == 0


def test_serve_refuses_bad_options_in_one_sentence(tmp_path, tiny_chat_model):
    r = subprocess.run([*CLI, "serve", "--model", str(tmp_path / "missing.gguf")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([*CLI, "serve", "--model", str(tiny_chat_model), "--parallel", "0"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "--parallel must be >= 1" in r.stderr
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    r = subprocess.run([*CLI, "serve", "--model", str(broken), "--port", "0", "--backend", "reference"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "the model failed to load" in r.stderr and "Traceback" not in r.stderr
