"""rope(x, positions, freq_factors=None, *, base, mode, n_rot=0, freq_scale=1.0) -> rotated x (ggml's rope).

x f32[m, heads, head_dim]; positions i32[m]. Dimension pair i (i < n_rot/2; n_rot=0 means head_dim) turns by
positions * freq_scale * base^(-2i/n_rot) / freq_factors[i]. mode 'normal' pairs (x[2i], x[2i+1]) (llama),
mode 'neox' pairs (x[i], x[i + n_rot/2]) (gemma, qwen). Dimensions from n_rot on pass through."""

import numpy as np

from rocmforge_core.ops import Case, OpSpec, Tolerance
from rocmforge_core.ops._cases import call, f32, i32, normal

MODES = ("normal", "neox")


def reference(x, positions, freq_factors=None, *, base, mode, n_rot=0, freq_scale=1.0):
    x = np.asarray(x, dtype=np.float32)
    d = x.shape[-1]
    n_rot = n_rot or d
    half = n_rot // 2
    inv = base ** (-np.arange(half, dtype=np.float64) * 2.0 / n_rot)
    if freq_factors is not None:
        inv = inv / np.asarray(freq_factors, dtype=np.float64)
    theta = np.asarray(positions, dtype=np.float64)[:, None] * freq_scale * inv[None, :]  # [m, half]
    cos = np.cos(theta)[:, None, :].astype(np.float32)
    sin = np.sin(theta)[:, None, :].astype(np.float32)
    out = x.copy()
    if mode == "normal":
        a, b = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
        out[..., 0:n_rot:2] = a * cos - b * sin
        out[..., 1:n_rot:2] = a * sin + b * cos
    elif mode == "neox":
        a, b = x[..., :half], x[..., half:n_rot]
        out[..., :half] = a * cos - b * sin
        out[..., half:n_rot] = a * sin + b * cos
    else:
        raise ValueError(f"rope mode must be one of {MODES}, got {mode!r}")
    return out


def _cases(rng, formats):
    for mode in MODES:
        for m, h, d in ((1, 4, 64), (9, 3, 128)):
            pos = rng.integers(0, 4096, m).astype(np.int32)
            yield Case((normal(rng, m, h, d), pos), {"base": 10000.0, "mode": mode}, label=f"{mode} {m}x{h}x{d}")
        yield Case((normal(rng, 5, 2, 64), np.arange(5, dtype=np.int32), np.linspace(1, 8, 16).astype(np.float32)),
                   {"base": 500000.0, "mode": mode, "n_rot": 32}, label=f"{mode} partial, freq factors")


SPEC = OpSpec("rope", 1, __doc__, Tolerance(nmse=1e-7), _cases, cheap=True,
              representative=lambda fmt, layout: call("rope", (f32(1, 32, 128), i32(1)), base=10000.0, mode="normal"))
