"""What a fuzzed GGUF file is put through: open it and use everything the loader offers. The only exception
allowed out is GGUFError. Shared by the hypothesis run in CI (tests/gguf/test_gguf_fuzz.py) and the atheris harness
for long local runs (fuzz/fuzz_atheris.py)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from gguf import GGUFValueType as V

from gguf_samples import TOKENS, every_value_type_kv, tiny_kv, write_gguf
from rocmforge_core.errors import GGUFError
from rocmforge_core.gguf import StringArray, open_gguf
from rocmforge_core.registry import Registry

NO_FORMATS = Registry()


def write_seeds(folder: Path) -> list[Path]:
    """The seed corpus: a small model, a vocab-only file, a v2 file with a custom alignment and every value type,
    and a single-tensor file (tiny files, so mutations mostly hit the header)."""
    rng = np.random.default_rng(0)
    small = {"output_norm.weight": (rng.standard_normal(64).astype(np.float32), 0),
             "blk.0.attn_q.weight": (rng.standard_normal((4, 32)).astype(np.float16), 1)}
    paths = [
        write_gguf(folder / "model.gguf", kv=tiny_kv(), tensors=small),
        write_gguf(folder / "vocab.gguf", kv={"tokenizer.ggml.tokens": (TOKENS, V.ARRAY, V.STRING),
                                              "tokenizer.ggml.merges": (["a b", "ab c"], V.ARRAY, V.STRING)}),
        write_gguf(folder / "types.gguf", kv=every_value_type_kv(), tensors=small, alignment=64),
        write_gguf(folder / "one.gguf", kv={"llama.block_count": (1, V.UINT32)},
                   tensors={"token_embd.weight": (rng.standard_normal((8, 32)).astype(np.float32), 0)}),
    ]
    types = bytearray(paths[2].read_bytes())
    types[4:8] = struct.pack("<I", 2)  # GGUFWriter writes v3
    paths[2].write_bytes(types)
    return paths


def exercise(path: Path) -> str:
    """'ok' if the file opens (its config and validation may still refuse it), else the GGUFError message;
    any other exception propagates (a bug)."""
    try:
        with open_gguf(path) as gf:
            for value in gf.metadata.values():
                _touch(value)
            for name, info in gf.tensors.items():
                raw = gf.raw(name) if info.nbytes else None
                if raw is not None:
                    assert raw.size == info.nbytes and raw.shape[0] == info.rows
                    raw[-1:].sum()  # the last bytes are really mapped
            for step in (lambda: gf.config, lambda: gf.validate(NO_FORMATS)):
                try:
                    step()
                except GGUFError as exc:
                    assert "\n" not in str(exc)
            return "ok"
    except GGUFError as exc:
        message = str(exc)
        assert message and "\n" not in message, message
        return message


def _touch(value) -> None:
    if isinstance(value, StringArray):
        assert len(value.tolist()) == len(value) == len(value.tobytes_list())
    elif isinstance(value, list):
        for v in value:
            _touch(v)
