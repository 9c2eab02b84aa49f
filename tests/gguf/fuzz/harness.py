"""What a fuzzed GGUF file is put through: open it and use everything the loader offers. The only exception
allowed out is GGUFError. Shared by the hypothesis run in CI (tests/gguf/test_fuzz.py) and the atheris harness
for long local runs (fuzz_atheris.py)."""

from __future__ import annotations

from pathlib import Path

from rocmforge_core.errors import GGUFError
from rocmforge_core.gguf import StringArray, open_gguf
from rocmforge_core.registry import Registry

NO_FORMATS = Registry()


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
