"""`rocmforge serve` as users run it: a subprocess listening on a free port, stopped with SIGINT."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import httpx

CLI = [sys.executable, "-c", "import sys; from rocmforge_core.cli import main; sys.exit(main())"]


def test_serve_answers_and_stops_on_sigint(tiny_chat_model):
    proc = subprocess.Popen([*CLI, "serve", "--model", str(tiny_chat_model), "--backend", "reference", "--port", "0",
                             "--parallel", "2", "--log-level", "warning"], stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        url = re.search(r"listening on (http://\S+)", line).group(1)
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/health", timeout=10).status_code != 200:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        r = httpx.post(f"{url}/v1/chat/completions", timeout=30,
                       json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["role"] == "assistant"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        proc.stderr.close()


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
