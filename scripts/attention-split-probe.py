"""Decode speed of a synthetic model on hip by cache size, depth and the cap on decode attention's splits
(ops.DECODE_MAX_SPLITS), one engine per setting over one loaded model. On the device machine, after
scripts/device-install.sh:  python3 scripts/attention-split-probe.py [SHAPE:TYPE] [CAP ...]
(default llama-8b:Q4_K_M, caps 64 128 256; the merge kernel takes 256 splits at most). The decode kernels are
the server's (tile products) unless ROCMFORGE_HIP_MMA=0 picks `rocmforge bench`'s integer-dot ones; 8 tokens
warm up, 64 are timed."""
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rocmforge_rocm_hip.ops as ops

from rocmforge_core.cli.bench import fill, generate
from rocmforge_core.cli.shapes import write_synthetic
from rocmforge_core.engine import Engine
from rocmforge_core.engine.model import Model

SETTINGS = ((641, 0), (16513, 0), (16513, 4096), (4225, 4096))  # (n_ctx, depth)

spec = sys.argv[1] if len(sys.argv) > 1 else "llama-8b:Q4_K_M"
caps = [int(c) for c in sys.argv[2:]] or [64, 128, 256]
with tempfile.TemporaryDirectory() as tmp:
    model = Model(write_synthetic(spec, Path(tmp)), backend="hip")
    rng = np.random.default_rng(0)
    for cap in caps:
        ops.DECODE_MAX_SPLITS = cap
        for n_ctx, depth in SETTINGS:
            engine = Engine(model, n_ctx=n_ctx, kv_dtype="f16")
            slot = engine.add_sequence()
            fill(engine, slot, depth, rng)
            ids = [int(t) for t in rng.integers(0, 1000, 72)]
            generate(engine, slot, depth, ids[:8])
            start = time.perf_counter()
            generate(engine, slot, depth, ids[8:])
            dt = (time.perf_counter() - start) / 64
            print(f"cap {cap:5d} n_ctx {n_ctx:6d} depth {depth:6d}: {1 / dt:7.1f} t/s {dt * 1e3:6.2f} ms/token",
                  flush=True)
            engine.free_sequence(slot)
    model.close()
