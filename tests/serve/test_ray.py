"""Two rocmforge replicas behind Ray Serve on this machine (a local Ray instance, CPU replicas, the tiny chat
model on the reference backend): concurrent requests through the openai client are answered by both replicas,
each answer as one server gives it, streamed answers included; then `rocmforge serve-ray` end to end."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from rocmforge_core.serve import ServeOptions

ray = pytest.importorskip("ray", reason="ray[serve] is not installed: pip install 'rocmforge[ray]'")
serve = pytest.importorskip("ray.serve", reason="ray[serve] is not installed: pip install 'rocmforge[ray]'")

from conftest import CLI  # noqa: E402
from rocmforge_core.serve.ray_deploy import REPLICA_HEADER, application  # noqa: E402

MESSAGES = [{"role": "user", "content": "hello the model"}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_url(tiny_chat_model):
    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        options = ServeOptions(model=tiny_chat_model, backend="reference", parallel=2, warm_up=False)
        serve.run(application(options, replicas=2, num_cpus=0.5), name="rocmforge", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def ask(url: str, stream: bool) -> tuple[str, str]:
    """(replica, text) of one greedy chat completion through the openai client."""
    with openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120) as client:
        raw = client.chat.completions.with_raw_response.create(model="m", messages=MESSAGES, max_tokens=12,
                                                               temperature=0, stream=stream)
        answer = raw.parse()
        text = "".join(c.choices[0].delta.content or "" for c in answer if c.choices) if stream \
            else answer.choices[0].message.content
        return raw.headers[REPLICA_HEADER], text


def test_concurrent_requests_are_spread_over_both_replicas(ray_url):
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: ask(ray_url, stream=i % 2 == 1), range(24)))
    replicas = {r for r, _ in answers}
    assert len(replicas) == 2, replicas
    assert len({text for _, text in answers}) == 1  # greedy: every replica, streamed or not, answers alike
    models = httpx.get(f"{ray_url}/v1/models", timeout=30)
    assert models.status_code == 200 and models.headers[REPLICA_HEADER] in replicas


def test_replica_errors_pass_through_as_the_server_answers_them(ray_url):
    with openai.OpenAI(base_url=f"{ray_url}/v1", api_key="unused", max_retries=0, timeout=60) as client:
        with pytest.raises(openai.BadRequestError, match="must be >= 0"):
            client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=-1)


def test_serve_ray_command(tiny_chat_model, ray_url):
    """`rocmforge serve-ray --replicas 2` joins the running Ray instance (started by the fixture above, which
    keeps this machine's two cores to one Ray) and serves until SIGINT."""
    port = free_port()
    address = ray.get_runtime_context().gcs_address
    serve.shutdown()  # the command starts Serve on its own port
    proc = subprocess.Popen([*CLI, "serve-ray", "-m", str(tiny_chat_model), "--backend", "reference",
                             "--replicas", "2", "--cpus-per-replica", "0.5", "--address", address, "--port",
                             str(port), "--no-warm-up", "--parallel", "2", "--log-level", "warning"],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        line = ""
        while "serving on" not in line:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "serve-ray exited before serving"
            assert time.monotonic() < deadline, "serve-ray did not get ready"
        url = re.search(r"serving on (http://\S+)", line).group(1)
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda i: ask(url, stream=i % 2 == 0), range(12)))
        assert len({r for r, _ in answers}) == 2
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        proc.stderr.close()
