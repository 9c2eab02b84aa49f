"""Hand-made site sequences of a small llama-like model (no GGUF file needed)."""

from __future__ import annotations

from rocmforge_core.ops import ArgInfo, Signature
from rocmforge_core.program import Site

D, F, V = 64, 128, 100


def layer_sites(i: int, fmt: str = "Q8_0", m: int = 1, start: int = 0) -> list[Site]:
    """One llama-like layer: norm, q matmul, add, norm, ffn matmuls, activation, down, add (simplified)."""
    x, h, w = ArgInfo((m, D), "f32"), ArgInfo((m, F), "f32"), ArgInfo((D,), "f32")
    b = f"blk.{i}"
    phase = "decode" if m == 1 else "prefill"
    s = start
    mk = lambda name, op, args, inputs, out, weight="", wb=0, **params: Site(  # noqa: E731
        name, op, Signature(op, args, tuple(sorted(params.items()))), phase, inputs, weight, wb, out * 4 * m)
    return [
        mk(f"{b}.attn_norm", "rmsnorm", (x, w), (s - 1,) if s else (), D, eps=1e-5),
        mk(f"{b}.attn_q", "matmul", (x, ArgInfo((D, D), fmt)), (s,), D, f"{b}.attn_q.weight", D * D),
        mk(f"{b}.attn_residual", "add", (x, x), (s - 1, s + 1) if s else (s + 1,), D),
        mk(f"{b}.ffn_norm", "rmsnorm", (x, w), (s + 2,), D, eps=1e-5),
        mk(f"{b}.ffn_gate", "matmul", (x, ArgInfo((F, D), fmt)), (s + 3,), F, f"{b}.ffn_gate.weight", F * D),
        mk(f"{b}.ffn_up", "matmul", (x, ArgInfo((F, D), fmt)), (s + 3,), F, f"{b}.ffn_up.weight", F * D),
        mk(f"{b}.ffn_act", "activation", (h, h), (s + 4, s + 5), F, kind="swiglu"),
        mk(f"{b}.ffn_down", "matmul", (h, ArgInfo((D, F), fmt)), (s + 6,), D, f"{b}.ffn_down.weight", F * D),
        mk(f"{b}.ffn_residual", "add", (x, x), (s + 2, s + 7), D),
    ]


def model_sites(n_layers=4, fmts=None, m=1) -> list[Site]:
    sites = [Site("token_embd", "embedding", Signature("embedding", (ArgInfo((V, D), "Q8_0"), ArgInfo((m,), "i32"))),
                  "decode" if m == 1 else "prefill", (), "token_embd.weight", V * D, D * 4 * m)]
    for i in range(n_layers):
        sites += layer_sites(i, (fmts or {}).get(i, "Q8_0"), m, start=len(sites))
    n = len(sites)
    sites.append(Site("output", "matmul", Signature("matmul", (ArgInfo((1, D), "f32"), ArgInfo((V, D), "Q6_K"))),
                      sites[0].phase, (n - 1,), "output.weight", V * D, V * 4))
    return sites
