"""Coverage-guided fuzzing of the GGUF loader with atheris, for long local runs (CI runs the bounded hypothesis
run in tests/gguf/test_gguf_fuzz.py instead).

    .venv/bin/pip install atheris
    mkdir -p /tmp/gguf-corpus && .venv/bin/python tests/gguf/fuzz/fuzz_atheris.py --seeds /tmp/gguf-corpus
    .venv/bin/python tests/gguf/fuzz/fuzz_atheris.py /tmp/gguf-corpus -max_len=65536 -max_total_time=3600

The first command writes the seed corpus (small files made with gguf's GGUFWriter); the second fuzzes. Any
exception other than GGUFError is a finding: atheris stops and saves the input as crash-<hash>.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # gguf_samples, gguf_fuzz_harness


def main() -> None:
    if sys.argv[1:2] == ["--seeds"]:
        from gguf_fuzz_harness import write_seeds
        write_seeds(Path(sys.argv[2]))
        return
    import atheris

    with atheris.instrument_imports():
        from gguf_fuzz_harness import exercise

    path = Path(tempfile.mkdtemp(prefix="gguf-fuzz-")) / "case.gguf"

    def one_input(data: bytes) -> None:
        path.write_bytes(data)
        exercise(path)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
