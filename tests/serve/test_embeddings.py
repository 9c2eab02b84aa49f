"""POST /v1/embeddings through the openai client: vectors pooled as the GGUF says (mean when it does not),
L2-normalized, as floats or base64, for batches of texts and token ids, against the numpy model of the same
weights (tests/models/hf_reference.py)."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest

from conftest import wait_idle
from tiny_model import write_chat_model
from rocmforge_core.models.synthetic import TinyConfig
from rocmforge_core.serve import ServeOptions
from rocmforge_core.serve.server import ServerThread
from tests.models import hf_reference


def config(**extra):
    return TinyConfig(n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, head_dim=16, d_ff=96, context_length=128,
                      tied_output=False, extra=extra)


@pytest.fixture(scope="module", params=[None, 2, 3], ids=["mean", "cls", "last"])
def served(request, tmp_path_factory):
    """(server, weights, config, pooling) for a model whose GGUF says pooling_type ``param`` (None: nothing)."""
    cfg = config() if request.param is None else config(pooling_type=request.param)
    path = tmp_path_factory.mktemp("embed") / "tiny-embed.gguf"
    weights = write_chat_model(path, cfg)
    srv = ServerThread(ServeOptions(model=path, backend="reference", parallel=2, warm_up=False,
                                    prefill_chunk=16)).start()
    yield srv, weights, cfg, {None: "mean", 2: "cls", 3: "last"}[request.param]
    srv.stop()


def expected(weights, cfg, ids, pooling):
    h = hf_reference.hidden("llama", weights, cfg, ids)
    v = {"mean": h.mean(0), "cls": h[0], "last": h[-1]}[pooling]
    return v / np.linalg.norm(v)


def test_embeddings_match_the_numpy_model(served):
    srv, weights, cfg, pooling = served
    tok = srv.state.tokenizer
    texts = ["hello world", "the model is an hello " * 6]  # the second: several prefill pieces of 16
    with openai.OpenAI(base_url=f"{srv.url}/v1", api_key="unused", max_retries=0, timeout=60) as client:
        r = client.embeddings.create(model="tiny-embed", input=texts)  # the client asks for base64
    ids = [tok.encode(t, add_special=True) for t in texts]
    assert [d.index for d in r.data] == [0, 1] and r.usage.prompt_tokens == sum(map(len, ids)) > 32
    for d, one in zip(r.data, ids):
        assert len(d.embedding) == cfg.d_model
        np.testing.assert_allclose(d.embedding, expected(weights, cfg, one, pooling), atol=1e-4, rtol=0)
    # the same vectors as floats, and from token ids
    body = {"input": ids, "encoding_format": "float"}
    floats = httpx.post(f"{srv.url}/v1/embeddings", json=body, timeout=60).json()
    np.testing.assert_allclose([d["embedding"] for d in floats["data"]], [d.embedding for d in r.data], atol=1e-6)
    raw = httpx.post(f"{srv.url}/v1/embeddings", json={"input": ids[0], "encoding_format": "base64"},
                     timeout=60).json()
    vector = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(vector, np.asarray(floats["data"][0]["embedding"], dtype=np.float32))
    m = wait_idle(srv.url)
    assert (m["rocmforge_sequences_running"], m["rocmforge_kv_blocks_used"]) == (0, 0)


def test_embeddings_beside_a_running_generation(served):
    srv, weights, cfg, pooling = served
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        with http.stream("POST", "/v1/completions", json={"prompt": "the", "max_tokens": 40, "stream": True,
                                                           "ignore_eos": True}) as stream:
            lines = stream.iter_lines()
            next(lines)
            r = http.post("/v1/embeddings", json={"input": [[1, 5, 9], [1, 7]], "encoding_format": "float"}).json()
            rest = [line for line in lines if line]
        assert rest[-1] == "data: [DONE]"
    for d, ids in zip(r["data"], [[1, 5, 9], [1, 7]]):
        np.testing.assert_allclose(d["embedding"], expected(weights, cfg, ids, pooling), atol=1e-4, rtol=0)


@pytest.mark.parametrize("body,message", [
    ({}, "'input' is required"),
    ({"input": []}, "'input' must be a string, an array of strings"),
    ({"input": [[]]}, "'input' must be a string, an array of strings"),
    ({"input": [1, True]}, "'input' must be a string, an array of strings"),
    ({"input": [5, 100000]}, "'input' holds token id 100000, outside the vocabulary"),
    ({"input": "x", "encoding_format": "int8"}, "'encoding_format' must be 'float' or 'base64', got 'int8'"),
    ({"input": "x", "dimensions": 8}, "'dimensions' must be this model's 64"),
    ({"input": [[3] * 200]}, "input 0 has 200 tokens but the context holds 128"),
    ({"input": ["x"] * 65}, "at most 64 may wait here"),
])
def test_bad_embedding_requests_get_400(served, body, message):
    srv = served[0]
    r = httpx.post(f"{srv.url}/v1/embeddings", json=body, timeout=30)
    assert r.status_code == 400 and message in r.json()["error"]["message"], r.text


def test_a_model_that_does_not_pool_is_refused(tmp_path):
    path = tmp_path / "no-pooling.gguf"
    write_chat_model(path, config(pooling_type=0))
    with ServerThread(ServeOptions(model=path, backend="reference", parallel=1, warm_up=False)) as srv:
        r = httpx.post(f"{srv.url}/v1/embeddings", json={"input": "hello"}, timeout=30)
    assert r.status_code == 400 and "gives no sequence embedding" in r.json()["error"]["message"]


def test_an_unknown_pooling_type_is_a_400(tmp_path):
    path = tmp_path / "odd-pooling.gguf"
    write_chat_model(path, config(pooling_type=9))
    with ServerThread(ServeOptions(model=path, backend="reference", parallel=1, warm_up=False)) as srv:
        r = httpx.post(f"{srv.url}/v1/embeddings", json={"input": "hello"}, timeout=30)
    assert r.status_code == 400 and "pooling_type 9 is not one of llama.cpp's" in r.json()["error"]["message"]
