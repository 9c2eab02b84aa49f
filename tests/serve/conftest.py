"""Fixtures of the server tests: a tiny random llama with a small SentencePiece vocabulary and a ChatML template,
servers run in-process (uvicorn in a thread on 127.0.0.1, any free port) or as `rocmforge serve` processes, and
/metrics readers."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from rocmforge_core.models.synthetic import TinyConfig
from rocmforge_core.serve import ServeOptions
from rocmforge_core.serve.server import ServerThread

sys.path.insert(0, str(Path(__file__).parent))
from tiny_model import write_chat_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "tiny-chat.gguf"
    write_chat_model(path, TinyConfig(n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, head_dim=16, d_ff=96,
                                      context_length=256, tied_output=False))
    return path


@pytest.fixture(scope="module")
def model(tiny_chat_model):
    """The tiny chat model on the reference backend, for tests that drive an engine or batcher directly."""
    from rocmforge_core.engine.model import Model

    m = Model(tiny_chat_model, backend="reference")
    yield m
    m.close()


@pytest.fixture(scope="module")
def server(tiny_chat_model):
    """A server on the reference backend (fast for a tiny model), 4 parallel sequences, an API-key-free one."""
    with ServerThread(ServeOptions(model=tiny_chat_model, backend="reference", parallel=4)) as srv:
        yield srv


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


CLI = [sys.executable, "-c", "import sys; from rocmforge_core.cli import main; sys.exit(main())"]


@contextlib.contextmanager
def serve_process(*args: str, timeout: float = 120.0):
    """`rocmforge serve ARGS --port 0` in a subprocess: yields (process, url) once /health says ok (or the
    process has exited: the caller reads why from its stderr); stops it with SIGINT."""
    proc = subprocess.Popen([*CLI, "serve", *args, "--port", "0", "--log-level", "warning"], stderr=subprocess.PIPE,
                            text=True)
    try:
        match = re.search(r"listening on (http://\S+)", proc.stderr.readline())
        url = match.group(1) if match else None
        deadline = time.monotonic() + timeout
        while url and proc.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health", timeout=10).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the server did not get ready"
            time.sleep(0.05)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.wait(30)
        proc.stderr.close()


def metrics(url: str) -> dict[str, float]:
    """/metrics as {name{labels}: value}."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def wait_idle(url: str, timeout: float = 30.0) -> dict[str, float]:
    """Poll /metrics until no sequence runs or waits and no KV block is in use; the last scrape."""
    deadline = time.monotonic() + timeout
    while True:
        m = metrics(url)
        idle = (m["rocmforge_sequences_running"], m["rocmforge_queue_depth"], m["rocmforge_kv_blocks_used"]) \
            == (0, 0, 0)
        if idle or time.monotonic() > deadline:
            return m
        time.sleep(0.05)

