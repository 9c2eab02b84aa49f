"""Prefix caching through ``Engine.generate``: a prompt that shares full KV blocks with an earlier sequence
computes only the rest, and its greedy answer equals an engine's without a prefix cache, on the synthetic model
of every architecture and on the two real models, on the cpu backend (reference where cpu is not installed)."""

from __future__ import annotations

import numpy as np
import pytest

from rocmforge_core.engine import Engine, Model, SamplingParams
from rocmforge_core.models.synthetic import ARCHES, TinyConfig, write_model
from rocmforge_core.registry import get_registry

GREEDY = SamplingParams(temperature=0)
CONFIGS = {"llama": TinyConfig(), "qwen2": TinyConfig(rope_base=1e6), "qwen3": TinyConfig(head_dim=32),
           "gemma3": TinyConfig(n_layers=6, sliding_window=5, n_kv_heads=1, head_dim=32)}


def host_backend() -> str:
    cpu = get_registry().backends.get("cpu")
    return "cpu" if cpu is not None and cpu.available() else "reference"


def answers(model, prompts, max_tokens, prefix_cache):
    """Each prompt's greedy generation, in order, on one engine."""
    engine = Engine(model, n_ctx=256, prefix_cache=prefix_cache)
    return [engine.generate(p, max_tokens=max_tokens, sampling=GREEDY) for p in prompts]


@pytest.mark.parametrize("arch", ARCHES)
def test_a_cache_hit_answers_as_a_full_prefill(arch, tmp_path):
    path = tmp_path / f"{arch}.gguf"
    write_model(path, arch, CONFIGS[arch], seed=7)
    model = Model(path, backend=host_backend())
    try:
        rng = np.random.default_rng(2)
        shared = rng.integers(1, 128, 37).tolist()
        prompts = [shared + rng.integers(1, 128, 9).tolist(), shared + rng.integers(1, 128, 5).tolist(), shared]
        cold = answers(model, prompts, 12, prefix_cache=False)
        warm = answers(model, prompts, 12, prefix_cache=True)
    finally:
        model.close()
    assert [g.ids for g in warm] == [g.ids for g in cold]
    assert [g.stats.cached_tokens for g in cold] == [0, 0, 0]
    # two full blocks of the 37 shared tokens; the bare prefix finds them too (its last token is computed)
    assert [g.stats.cached_tokens for g in warm] == [0, 32, 32]


@pytest.mark.slow
@pytest.mark.parametrize("which", ["smollm2", "gemma3"])
def test_a_follow_up_turn_reuses_the_conversation_on_real_models(which, request):
    """A second chat turn re-renders the first one: its prompt starts with the first turn's tokens."""
    model = Model(request.getfixturevalue("smollm2_path" if which == "smollm2" else "gemma_path"),
                  backend=host_backend())
    try:
        tok = model.tokenizer
        turn = [{"role": "user", "content": "Name three colors of the rainbow, please."}]
        first = tok.encode(tok.apply_chat_template(turn), add_special=False, special=True)
        turn += [{"role": "assistant", "content": "Red, orange and yellow."},
                 {"role": "user", "content": "And two more?"}]
        second = tok.encode(tok.apply_chat_template(turn), add_special=False, special=True)
        cold = answers(model, [first, second], 8, prefix_cache=False)
        warm = answers(model, [first, second], 8, prefix_cache=True)
    finally:
        model.close()
    shared = next(i for i, (a, b) in enumerate(zip(first + [-1], second)) if a != b)
    assert [g.ids for g in warm] == [g.ids for g in cold]
    assert warm[1].stats.cached_tokens == shared // 16 * 16 > 0


def test_the_timings_line_counts_only_computed_prompt_tokens():
    from rocmforge_core.cli.generation import statistics
    from rocmforge_core.engine.engine import Stats

    s = Stats("cpu", 0.2, 48, 0.5, 3, 0.3, seed=1, cached_tokens=32)
    assert s.prefill_tokens_per_s == 32.0
    assert "prompt 48 tokens (32 from the prefix cache) in 0.50 s (32.0 t/s)" in statistics(s)
