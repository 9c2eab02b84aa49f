"""Tiny random models of every architecture, written with gguf's writer, against an independent numpy
implementation of the published (Hugging Face) model definitions."""

from __future__ import annotations

import numpy as np
import pytest

from . import hf_reference
from rocmforge_core.engine import Engine, Model
from rocmforge_core.errors import GGUFError, UnsupportedError
from rocmforge_core.models.synthetic import TinyConfig, write_model

VARIANTS = {
    "llama": TinyConfig(),
    "llama-untied-f16-ropefreqs": TinyConfig(tied_output=False, dtype="F16", rope_freqs=True, n_kv_heads=1),
    "qwen2": TinyConfig(rope_base=1e6),
    "qwen3": TinyConfig(n_heads=4, n_kv_heads=4, head_dim=32),
    "gemma3": TinyConfig(n_layers=6, sliding_window=5, rope_base=1e6, n_kv_heads=1, head_dim=32),
}


def arch_of(variant: str) -> str:
    return variant.split("-")[0]


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def tiny(request, tmp_path_factory):
    variant = request.param
    path = tmp_path_factory.mktemp("tiny") / f"{variant}.gguf"
    weights = write_model(path, arch_of(variant), VARIANTS[variant], seed=len(variant))
    model = Model(path, backend="reference")
    yield variant, weights, model
    model.close()


def prompt(n, vocab, seed=1):
    return np.random.default_rng(seed).integers(0, vocab, n).tolist()


def test_logits_match_independent_implementation(tiny):
    variant, weights, model = tiny
    cfg = VARIANTS[variant]
    ids = prompt(13, cfg.vocab_size)
    engine = Engine(model, n_ctx=64, block_size=4)
    slot = engine.add_sequence()
    ours = engine.logits_to_host(engine.prefill(slot, ids, all_logits=True).logits)
    expected = hf_reference.logits(arch_of(variant), weights, cfg, ids)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, atol=2e-4 * np.abs(expected).max(), rtol=0)


def test_decode_with_kv_cache_equals_full_prefill(tiny):
    variant, _, model = tiny
    ids = prompt(11, VARIANTS[variant].vocab_size, seed=2)
    engine = Engine(model, n_ctx=64, block_size=4, max_seqs=2)  # several blocks per sequence
    full = engine.logits_to_host(engine.prefill(engine.add_sequence(), ids, all_logits=True).logits)
    slot = engine.add_sequence()
    rows = [engine.logits_to_host(engine.prefill(slot, ids[:5]).logits)[0]]
    for pos in range(5, len(ids)):
        rows.append(engine.logits_to_host(engine.step([ids[pos]], [slot], [pos], [0], "decode").logits)[0])
    np.testing.assert_allclose(np.stack(rows), full[4:], atol=1e-4, rtol=1e-4)


def test_call_sites_are_named_by_gguf_tensors(tiny):
    variant, _, model = tiny
    sites = {site for site, _ in model.plan.choices}
    assert {"token_embd", "output", "blk.0.attn_q", "blk.0.ffn_down", "blk.0.attn", "blk.0.attn_norm"} <= sites
    if arch_of(variant) == "qwen2":
        assert "blk.0.attn_q.bias" in sites
    if arch_of(variant) in ("qwen3", "gemma3"):
        assert "blk.0.attn_q_norm" in sites
    assert all(c.backend == "reference" for c in model.plan.choices.values())


def test_missing_tensor_is_named(tmp_path):
    path = tmp_path / "broken.gguf"
    write_model(path, "qwen3", TinyConfig(), omit=("blk.1.attn_k_norm.weight",))
    with pytest.raises(GGUFError, match=r"blk\.1\.attn_k_norm\.weight.*qwen3"):
        Model(path, backend="reference")


def test_unknown_architecture_is_a_clear_error(tmp_path):
    import gguf
    path = tmp_path / "mamba.gguf"
    writer = gguf.GGUFWriter(str(path), "mamba")
    writer.add_block_count(1)
    writer.add_embedding_length(8)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UnsupportedError, match="architecture 'mamba'"):
        Model(path, backend="reference")


@pytest.mark.parametrize("arch", ["qwen2", "gemma3"])
def test_unsupported_rope_scaling_is_refused(tmp_path, arch):
    path = tmp_path / "yarn.gguf"
    write_model(path, arch, TinyConfig(extra={"rope.scaling.type": "yarn", "rope.scaling.factor": 4.0}))
    with pytest.raises(UnsupportedError, match="rope scaling 'yarn'"):
        Model(path, backend="reference")


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_embeddings_match_independent_implementation(tiny, pooling):
    """Hidden states from the program variant with no output matrix, pooled and L2-normalized, against the
    numpy model; a long input is read in several prefill pieces (chunk 8) and padded steps."""
    variant, weights, model = tiny
    cfg = VARIANTS[variant]
    ids = prompt(21, cfg.vocab_size, seed=3)
    engine = Engine(model, n_ctx=64, block_size=4, prefill_chunk=8)
    slot = engine.add_sequence()
    hidden = engine.hidden_states(slot, ids)
    expected = hf_reference.hidden(arch_of(variant), weights, cfg, ids)
    np.testing.assert_allclose(hidden, expected, atol=2e-4 * np.abs(expected).max(), rtol=0)
    engine.free_sequence(slot)
    slot = engine.add_sequence()
    ours = engine.embed(slot, ids, pooling)
    v = {"mean": expected.mean(0), "cls": expected[0], "last": expected[-1]}[pooling]
    np.testing.assert_allclose(ours, v / np.linalg.norm(v), atol=1e-4, rtol=0)
    assert ours.dtype == np.float32 and abs(np.linalg.norm(ours) - 1) < 1e-5
    assert not any(k[-1] == "logits" for k in engine._shapes)  # no step computed logits
    for shape in engine._shapes.values():
        names = [site.name for site in shape.bound.program.sites]
        assert names[-1] == "output_norm" and "output" not in names and "sample" not in names
