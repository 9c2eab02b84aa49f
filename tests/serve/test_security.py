"""What a web page could make a browser do to a local server (simple cross-origin posts, DNS rebinding), the API
key's sources, the warning for a server open to the network without one, and the access log."""

from __future__ import annotations

import logging
import re
import subprocess
import time

import httpx
import pytest

from conftest import CLI, serve_process
from rocmforge_core.errors import RocmforgeError
from rocmforge_core.serve import ServeOptions
from rocmforge_core.serve.security import API_KEY_ENV, api_key, host_allowed
from rocmforge_core.serve.server import ServerThread

BODY = b'{"prompt": "hi", "max_tokens": 2}'


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None])
def test_bodies_that_are_not_declared_json_get_415(http, ctype):
    """A page may send these cross-origin without a preflight; JSON needs one, which this server never grants."""
    headers = {"content-type": ctype} if ctype else {}
    for route in ("/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize"):
        r = http.post(route, content=BODY, headers=headers)
        assert r.status_code == 415, (route, r.text)
        assert "must be JSON sent with 'Content-Type: application/json'" in r.json()["error"]["message"]
    r = http.post("/v1/completions", content=BODY, headers={"content-type": "application/json; charset=utf-8"})
    assert r.status_code == 200


@pytest.mark.parametrize("host, ok", [
    ("127.0.0.1", True), ("127.0.0.1:8080", True), ("localhost:1234", True), ("LOCALHOST.", True),
    ("[::1]:80", True), ("evil.example", False), ("evil.example:8080", False), ("127.0.0.1.nip.io", False),
    ("localhost.evil.example", False), ("10.1.2.3", False),
])
def test_host_header_on_a_loopback_server(http, server, host, ok):
    r = http.get("/v1/models", headers={"host": host})
    assert (r.status_code == 200) == ok, r.text
    if not ok:
        assert r.status_code == 400 and r.json()["error"]["code"] == "host_not_allowed"
        assert "DNS rebinding" in r.json()["error"]["message"]


@pytest.mark.parametrize("bound, host, allowed, ok", [
    ("0.0.0.0", "192.168.1.7:8080", (), True), ("0.0.0.0", "localhost", (), True),
    ("0.0.0.0", "my.server.lan", (), False), ("0.0.0.0", "my.server.lan:443", ("my.server.lan",), True),
    ("::", "[fe80::1]:80", (), True), ("192.168.1.7", "192.168.1.7", (), True),
    ("192.168.1.7", "192.168.1.8", (), False), ("192.168.1.7", "localhost", (), False),
    ("myhost", "myhost:8080", (), True), ("::1", "[::1]", (), True), ("127.0.0.1", "anything", ("*",), True),
    ("127.0.0.1", None, (), True),  # no Host header: HTTP/1.0, not a browser
])
def test_host_rules(bound, host, allowed, ok):
    assert host_allowed(host, bound, allowed) == ok


def test_allowed_hosts_and_health_are_checked_too(tiny_chat_model):
    with ServerThread(ServeOptions(model=tiny_chat_model, backend="reference", parallel=1,
                                   allowed_hosts=("proxy.example",))) as srv:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            assert c.get("/health", headers={"host": "proxy.example:443"}).status_code == 200
            assert c.get("/health", headers={"host": "other.example"}).status_code == 400
            assert c.get("/metrics", headers={"host": "other.example"}).status_code == 400


def test_api_key_sources(tmp_path, monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    assert api_key(None, None) is None
    monkeypatch.setenv(API_KEY_ENV, " from-env\n")
    assert api_key(None, None) == "from-env"
    assert api_key("flag", None) == "flag"
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    assert api_key(None, str(key_file)) == "from-file"
    with pytest.raises(RocmforgeError, match="not both"):
        api_key("flag", str(key_file))
    key_file.write_text("  \n")
    with pytest.raises(RocmforgeError, match=f"the API key file {key_file} is empty"):
        api_key(None, str(key_file))
    with pytest.raises(RocmforgeError, match="cannot read the API key file"):
        api_key(None, str(tmp_path / "missing"))
    key_file.write_bytes(b"\xff\xfe")
    with pytest.raises(RocmforgeError, match="is not UTF-8 text"):
        api_key(None, str(key_file))


def test_a_server_open_to_the_network_without_a_key_warns(tiny_chat_model, tmp_path):
    with serve_process("--model", str(tiny_chat_model), "--backend", "reference", "--host", "0.0.0.0") as (proc, url):
        assert proc.poll() is None
        warning = proc.stderr.readline()  # the line after "listening on"
    assert "warning: 0.0.0.0 is reachable from other machines and no API key is set" in warning, warning


def test_the_key_from_a_file_is_required_and_silences_the_warning(tiny_chat_model, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("s3cret\n")
    with serve_process("--model", str(tiny_chat_model), "--backend", "reference", "--host", "0.0.0.0",
                       "--api-key-file", str(key_file)) as (proc, url):
        url = url.replace("0.0.0.0", "127.0.0.1")
        body = {"prompt": "hi", "max_tokens": 1}
        assert httpx.post(f"{url}/v1/completions", json=body, timeout=30).status_code == 401
        r = httpx.post(f"{url}/v1/completions", json=body, timeout=30, headers={"authorization": "Bearer s3cret"})
        assert r.status_code == 200
        proc.terminate()
        proc.wait(30)
        assert "no API key is set" not in proc.stderr.read()


def test_bad_serve_options_are_one_sentence(tiny_chat_model, tmp_path):
    for args, message in [(["--read-timeout", "0"], "--read-timeout must be a number of seconds > 0, got 0.0"),
                          (["--time-limit", "nan"], "--time-limit must be a number of seconds > 0, got nan"),
                          (["--max-connections", "0"], "--max-connections must be >= 1, got 0"),
                          (["--api-key-file", str(tmp_path / "none")], "cannot read the API key file")]:
        r = subprocess.run([*CLI, "serve", "--model", str(tiny_chat_model), *args], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


# -- access log --------------------------------------------------------------------------------------------------
def test_one_access_log_line_per_request(http, server, caplog):
    caplog.set_level(logging.INFO, logger="rocmforge.access")
    http.post("/v1/completions", json={"prompt": "hello", "max_tokens": 3, "ignore_eos": True, "temperature": 0})
    with http.stream("POST", "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                           "stream": True, "max_tokens": 2, "ignore_eos": True}) as r:
        r.read()

    def lines():
        return [r.getMessage() for r in caplog.records if r.name == "rocmforge.access"]
    deadline = time.monotonic() + 10
    while len(lines()) < 2 and time.monotonic() < deadline:  # a stream's line follows its last byte
        time.sleep(0.01)
    http.get("/v1/nothing")
    lines = lines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("127.0.0.1:") and '"POST /v1/completions" 200 ' in lines[0]
    assert re.search(r" \d+\.\d{3} s: cmpl-[0-9a-f]+ prompt \d+ \(\d+ cached\), completion 3 tokens, "
                     r"ttft \d+\.\d{3} s, length$", lines[0]), lines[0]
    assert '"POST /v1/chat/completions" 200 ' in lines[1] and re.search(
        r": chatcmpl-[0-9a-f]+ prompt \d+ \(\d+ cached\), completion 2 tokens, ttft \d+\.\d{3} s, length$",
        lines[1]), lines[1]
    assert '"GET /v1/nothing" 404 ' in lines[2]
