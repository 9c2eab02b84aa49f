"""rocmforge's parser against gguf's GGUFReader (the reference implementation) on every test file: the same
metadata keys, value types and values, and the same tensor infos and bytes."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import gguf.gguf_reader
import numpy as np
import pytest
from gguf import GGUFReader, GGUFValueType

from rocmforge_core.gguf import StringArray, open_gguf

VOCAB = sorted((Path(__file__).resolve().parents[3] / "shared" / "testdata" / "vocab").glob("*.gguf"))


def _flatten(value) -> list:
    """GGUFReader flattens nested arrays; so do we, for comparison."""
    if isinstance(value, list):
        return [x for v in value for x in _flatten(v)]
    if isinstance(value, StringArray):
        return value.tobytes_list()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return [value]


def reference(path) -> GGUFReader:
    """GGUFReader over a plain ndarray view of its memmap: the same parsing code, 3-4x faster, since three
    quarters of its time goes to np.memmap's bookkeeping on each of its million small slices."""
    memmap = np.memmap
    with mock.patch.object(gguf.gguf_reader.np, "memmap", lambda *a, **k: memmap(*a, **k).view(np.ndarray)):
        return GGUFReader(path)


def assert_same_as_gguf_reader(path) -> None:
    ref = reference(path)
    gf = open_gguf(path)
    fields = {k: f for k, f in ref.fields.items() if not k.startswith("GGUF.")}
    assert gf.version == int(ref.fields["GGUF.version"].parts[0][0])
    assert list(gf.metadata) == list(fields)
    for key, field in fields.items():
        ours = gf.metadata[key]
        assert gf.value_types[key] == field.types[0], key
        if field.types[0] == GGUFValueType.ARRAY:
            if field.types[-1] == GGUFValueType.STRING:
                expected = [bytes(field.parts[i]) for i in field.data]
            else:
                expected = np.concatenate([field.parts[i] for i in field.data]).tolist() if field.data else []
            assert _flatten(ours) == expected, key
        elif field.types[0] == GGUFValueType.STRING:
            assert ours == bytes(field.parts[-1]).decode(), key
        else:
            assert ours == field.parts[-1][0], key  # exact: float32 values widen losslessly
    assert list(gf.tensors) == [t.name for t in ref.tensors]
    for t in ref.tensors:
        info = gf.tensors[t.name]
        assert (info.ggml_type, info.shape, info.offset, info.nbytes) == \
               (int(t.tensor_type), tuple(int(d) for d in reversed(t.shape)), t.data_offset, t.n_bytes), t.name
        assert np.array_equal(gf.raw(t.name).reshape(-1), np.asarray(t.data).reshape(-1).view(np.uint8)), t.name


@pytest.mark.parametrize("path", VOCAB, ids=lambda p: p.name)
def test_vocab_file_matches_gguf_reader(path):
    assert_same_as_gguf_reader(path)


def test_vocab_files_are_there(vocab_files):
    assert [p.name for p in vocab_files] == [p.name for p in VOCAB]


@pytest.mark.parametrize("model", ["smollm2_path", "gemma_path"])
def test_real_model_matches_gguf_reader(request, model):
    assert_same_as_gguf_reader(request.getfixturevalue(model))


def test_tiny_files_match_gguf_reader(tiny_model, tmp_path):
    assert_same_as_gguf_reader(tiny_model)
    v2 = bytearray(tiny_model.read_bytes())
    v2[4:8] = (2).to_bytes(4, "little")
    (tmp_path / "v2.gguf").write_bytes(v2)
    assert_same_as_gguf_reader(tmp_path / "v2.gguf")
