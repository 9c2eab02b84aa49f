"""Broken and hostile files: each gets one GGUFError sentence naming the problem, never a crash, a hang or a huge
allocation. Files are real ones (../shared vocab files, SmolLM2) or GGUFWriter output, copied and corrupted."""

from __future__ import annotations

import struct
import tracemalloc

import numpy as np
import pytest
from gguf import GGUFValueType

from gguf_samples import after_string, find_string, get, put, tensor_info_at, write_gguf, write_tiny_model
from rocmforge_core.errors import GGUFError
from rocmforge_core.gguf import open_gguf
from rocmforge_core.registry import Registry

EMPTY = Registry()  # no formats installed


def fails(tmp_path, data, pattern: str, name: str = "bad.gguf", size: int | None = None) -> str:
    path = _write(tmp_path / name, data, size)
    with pytest.raises(GGUFError, match=pattern) as err:
        open_gguf(path)
    message = str(err.value)
    assert message.startswith(f"{name}: ") and "\n" not in message
    return message


def _write(path, data, size: int | None = None):
    """Write ``data``, then extend the file to ``size`` bytes (sparse: a big model's header with empty data)."""
    with path.open("wb") as f:
        f.write(bytes(data))
        if size is not None:
            f.truncate(size)
    return path


# -- the preamble ----------------------------------------------------------------------------------------------
def test_bad_magic(tmp_path, tiny_bytes):
    tiny_bytes[:4] = b"GGML"
    fails(tmp_path, tiny_bytes, r"not a GGUF file \(starts with b'GGML', expected b'GGUF'\)")


def test_empty_and_tiny_files(tmp_path):
    fails(tmp_path, b"", "the file is empty")
    fails(tmp_path, b"GG", "not a GGUF file")
    fails(tmp_path, b"GGUF\x03\x00", "truncated: the version at byte 4 needs 4 bytes but only 2 remain")


@pytest.mark.parametrize("version", [0, 1, 4, 2**32 - 1])
def test_unsupported_version(tmp_path, tiny_bytes, version):
    put(tiny_bytes, 4, "I", version)
    fails(tmp_path, tiny_bytes, f"unsupported GGUF version {version} \\(rocmforge reads versions 2 and 3\\)")


def test_big_endian_file_is_refused_clearly(tmp_path):
    path = write_tiny_model(tmp_path / "be.gguf", big_endian=True)
    with pytest.raises(GGUFError, match="a big-endian GGUF file \\(version 3\\); rocmforge reads little-endian"):
        open_gguf(path)


# -- truncation ------------------------------------------------------------------------------------------------
def test_every_truncation_of_a_small_file_is_an_error(tmp_path, tiny_model):
    data = tiny_model.read_bytes()
    data_offset = open_gguf(tiny_model).data_offset
    # every cut through the preamble and the first keys, then a spread through the rest and the data
    cuts = list(range(1, 600)) + list(range(600, data_offset, 11)) + list(range(data_offset, len(data), 997))
    path = tmp_path / "cut.gguf"
    for cut in cuts:
        path.write_bytes(data[:cut])
        with pytest.raises(GGUFError) as err:
            open_gguf(path)
        assert "truncated" in str(err.value) or "exceeds" in str(err.value) or cut < 4, (cut, err.value)


def test_truncated_real_vocab_file(tmp_path, vocab_files):
    data = next(p for p in vocab_files if "llama-spm" in p.name).read_bytes()
    for cut in np.linspace(10, len(data) - 1, 40).astype(int):
        msg = fails(tmp_path, data[:cut], "truncated|exceeds|past the end")
        assert "ggml" in msg or "tokenizer" in msg or "byte" in msg


def test_truncated_tensor_data_of_a_real_model(tmp_path, smollm2_path):
    gf = open_gguf(smollm2_path)
    first = min(gf.tensors.values(), key=lambda t: t.offset)
    with smollm2_path.open("rb") as f:
        data = f.read(first.offset + first.nbytes - 1)
    fails(tmp_path, data, f"tensor '{first.name}' data \\(bytes {first.offset} to {first.offset + first.nbytes}\\) "
                          "extends past the end of the file")


# -- counts and lengths ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("field,pos,value", [("tensor", 8, 2**63), ("tensor", 8, 10**6),
                                             ("metadata key", 16, 2**64 - 1), ("metadata key", 16, 10**5)])
def test_header_counts_exceeding_the_file(tmp_path, tiny_bytes, field, pos, value):
    put(tiny_bytes, pos, "Q", value)
    fails(tmp_path, tiny_bytes, f"the {field} count {value} at byte {pos} exceeds what the remaining")


def test_key_length_exceeding_the_file(tmp_path, tiny_bytes):
    put(tiny_bytes, 24, "Q", 2**64 - 1)
    fails(tmp_path, tiny_bytes, f"the length {2**64 - 1} of a metadata key at byte 24 exceeds the file")


def test_string_value_length_exceeding_the_file(tmp_path, tiny_bytes):
    at = after_string(tiny_bytes, "general.name") + 4
    put(tiny_bytes, at, "Q", len(tiny_bytes))
    fails(tmp_path, tiny_bytes, "the length .* of the value of 'general.name' at byte .* exceeds the file")


def _array_at(data, key: str) -> int:
    """Offset of the element count of array ``key``."""
    at = after_string(data, key)
    assert get(data, at, "I") == GGUFValueType.ARRAY
    return at + 8


@pytest.mark.parametrize("key", ["tokenizer.ggml.tokens", "tokenizer.ggml.scores"])
def test_array_counts_exceeding_the_file(tmp_path, tiny_bytes, key):
    put(tiny_bytes, _array_at(tiny_bytes, key), "Q", 2**62)
    fails(tmp_path, tiny_bytes, f"the '{key}' element count {2**62} at byte .* exceeds")


def test_string_array_whose_strings_run_past_the_end(tmp_path, tiny_bytes):
    at = _array_at(tiny_bytes, "tokenizer.ggml.tokens")
    put(tiny_bytes, at, "Q", (len(tiny_bytes) - at) // 8 - 2)  # fits as length fields, not as strings
    fails(tmp_path, tiny_bytes, "string \\d+ of 'tokenizer.ggml.tokens' at byte \\d+ needs \\d+ bytes, past the end")


def test_token_length_exceeding_a_real_vocab_file(tmp_path, vocab_files):
    for path in vocab_files[:3]:
        data = bytearray(path.read_bytes())
        first = _array_at(data, "tokenizer.ggml.tokens") + 8
        put(data, first + 8 + get(data, first, "Q"), "Q", 2**60)  # the second token's length
        fails(tmp_path, data, "string 1 of 'tokenizer.ggml.tokens' at byte \\d+ needs \\d+ bytes, past the end")


def test_hostile_counts_allocate_nothing_big(tmp_path, tiny_bytes):
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores"):
        data = bytearray(tiny_bytes)
        put(data, _array_at(data, key), "Q", 2**40)
        (tmp_path / "h.gguf").write_bytes(data)
        tracemalloc.start()
        with pytest.raises(GGUFError):
            open_gguf(tmp_path / "h.gguf")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 2**20, peak


# -- metadata --------------------------------------------------------------------------------------------------
def test_unknown_value_types(tmp_path, tiny_bytes):
    data = bytearray(tiny_bytes)
    put(data, after_string(data, "general.name"), "I", 13)
    fails(tmp_path, data, "metadata key 'general.name' has unknown value type 13")
    data = bytearray(tiny_bytes)
    put(data, after_string(data, "tokenizer.ggml.scores") + 4, "I", 0xFFFF)
    fails(tmp_path, data, "metadata key 'tokenizer.ggml.scores' is an array of unknown value type 65535")


def test_duplicate_keys(tmp_path, tiny_bytes):
    at = find_string(tiny_bytes, "test.i8")
    tiny_bytes[at + 8:at + 15] = b"test.u8"
    fails(tmp_path, tiny_bytes, "metadata key 'test.u8' appears twice")


def test_key_that_is_not_utf8(tmp_path, tiny_bytes):
    at = find_string(tiny_bytes, "test.i8")
    tiny_bytes[at + 8] = 0xFF
    fails(tmp_path, tiny_bytes, "a metadata key at byte \\d+ is not valid UTF-8")


def test_deeply_nested_arrays(tmp_path):
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"x" + struct.pack("<I", 9)
    data += struct.pack("<IQ", 9, 1) * 20 + struct.pack("<IQ", 0, 0)
    fails(tmp_path, data, "metadata key 'x' nests arrays deeper than 8 levels")


@pytest.mark.parametrize("value,vtype,got", [(3, GGUFValueType.UINT32, "3"), (0, GGUFValueType.UINT32, "0"),
                                             ("32", GGUFValueType.STRING, "a string"),
                                             (-32, GGUFValueType.INT32, "-32")])
def test_bad_alignment(tmp_path, value, vtype, got):
    path = write_gguf(tmp_path / "a.gguf", kv={"general.alignment": (value, vtype)})
    with pytest.raises(GGUFError, match=f"general.alignment must be an unsigned power of two, got {got}$"):
        open_gguf(path)


def test_huge_names_are_cut_short_in_messages(tmp_path):
    key = "k" * 100_000
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key.encode() + struct.pack("<I", 77)
    message = fails(tmp_path, data, "metadata key 'k{77}\\.\\.\\.' has unknown value type 77")
    assert len(message) < 200


# -- tensor infos ----------------------------------------------------------------------------------------------
def test_duplicate_tensor_names(tmp_path, tiny_bytes):
    at = find_string(tiny_bytes, "blk.0.attn_v.weight")
    tiny_bytes[at + 8:at + 8 + 19] = b"blk.0.attn_k.weight"
    fails(tmp_path, tiny_bytes, "tensor 'blk.0.attn_k.weight' is declared twice")


@pytest.mark.parametrize("n_dims", [0, 5, 2**32 - 1])
def test_dimension_counts(tmp_path, tiny_bytes, n_dims):
    put(tiny_bytes, tensor_info_at(tiny_bytes, "blk.0.attn_k.weight")["n_dims"], "I", n_dims)
    fails(tmp_path, tiny_bytes, f"tensor 'blk.0.attn_k.weight' has {n_dims} dimensions \\(GGUF allows 1 to 4\\)")


def test_zero_dimension(tmp_path, tiny_bytes):
    put(tiny_bytes, tensor_info_at(tiny_bytes, "blk.0.attn_k.weight")["dims"] + 8, "Q", 0)
    fails(tmp_path, tiny_bytes, "tensor 'blk.0.attn_k.weight' has a zero dimension \\[64, 0\\]")


def test_dimensions_whose_product_overflows(tmp_path, tiny_bytes):
    at = tensor_info_at(tiny_bytes, "blk.0.attn_v.weight")["dims"]
    put(put(tiny_bytes, at, "Q", 2**62), at + 8, "Q", 2**62)
    fails(tmp_path, tiny_bytes, "dimensions \\[4611686018427387904, 4611686018427387904\\] multiply to more than")


def test_large_dimensions_run_out_of_the_file(tmp_path, tiny_bytes):
    put(tiny_bytes, tensor_info_at(tiny_bytes, "blk.0.attn_v.weight")["dims"] + 8, "Q", 2**40)
    fails(tmp_path, tiny_bytes, "tensor 'blk.0.attn_v.weight' data .* extends past the end of the file")


def test_rows_that_are_not_whole_blocks(tmp_path, tiny_bytes):
    put(tiny_bytes, tensor_info_at(tiny_bytes, "blk.0.attn_k.weight")["dims"], "Q", 33)
    fails(tmp_path, tiny_bytes, "rows of 33 elements are not a whole number of Q8_0 blocks of 32")


def test_misaligned_offset(tmp_path, tiny_bytes):
    at = tensor_info_at(tiny_bytes, "blk.0.attn_k.weight")["offset"]
    put(tiny_bytes, at, "Q", get(tiny_bytes, at, "Q") + 1)
    fails(tmp_path, tiny_bytes, "data offset \\d+ is not a multiple of the alignment 32")


@pytest.mark.parametrize("offset", [2**63, 2**64 - 32, 10**9])
def test_offset_out_of_bounds(tmp_path, tiny_bytes, offset):
    put(tiny_bytes, tensor_info_at(tiny_bytes, "blk.0.attn_k.weight")["offset"], "Q", offset)
    fails(tmp_path, tiny_bytes, "tensor 'blk.0.attn_k.weight' data .* extends past the end of the file")


def test_overlapping_tensors(tmp_path, tiny_bytes):
    first = get(tiny_bytes, tensor_info_at(tiny_bytes, "token_embd.weight")["offset"], "Q")
    put(tiny_bytes, tensor_info_at(tiny_bytes, "blk.0.attn_k.weight")["offset"], "Q", first)
    fails(tmp_path, tiny_bytes, "tensors .* overlap in the data section")


def test_real_model_with_hostile_tensor_info(tmp_path, smollm2_path):
    gf = open_gguf(smollm2_path)
    with smollm2_path.open("rb") as f:
        header = bytearray(f.read(gf.data_offset))
    at = tensor_info_at(header, "blk.0.ffn_down.weight")
    data = bytearray(header)
    size = smollm2_path.stat().st_size
    put(data, at["dims"] + 8, "Q", 2**63 - 1)
    fails(tmp_path, data, "'blk.0.ffn_down.weight' dimensions .* multiply to more than 2\\*\\*63 - 1 elements",
          size=size)
    data = bytearray(header)
    put(data, at["n_dims"], "I", 7)
    fails(tmp_path, data, "'blk.0.ffn_down.weight' has 7 dimensions", size=size)
    data = bytearray(header)
    put(data, at["offset"], "Q", get(data, at["offset"], "Q") + 16)
    fails(tmp_path, data, "'blk.0.ffn_down.weight' data offset \\d+ is not a multiple of the alignment 32", size=size)


# -- tensor types no plugin provides ---------------------------------------------------------------------------
def test_unknown_tensor_type_opens_and_fails_when_used(tmp_path, smollm2_path):
    """A model with an MXFP4 tensor opens (its geometry is GGML's); using it names the type and the plugin."""
    gf = open_gguf(smollm2_path)
    with smollm2_path.open("rb") as f:
        data = bytearray(f.read(gf.data_offset))
    put(data, tensor_info_at(data, "blk.3.ffn_up.weight")["type"], "I", 39)
    _write(tmp_path / "mx.gguf", data, smollm2_path.stat().st_size)
    with open_gguf(tmp_path / "mx.gguf") as mx:
        info = mx.tensors["blk.3.ffn_up.weight"]
        assert (info.type_name, info.shape, info.nbytes) == ("MXFP4", (1536, 576), 1536 * 576 // 32 * 17)
        assert mx.config == gf.config
        pattern = r"tensor 'blk.3.ffn_up.weight' has type 39 \(MXFP4\), which no installed plugin provides; " \
                  r"install rocmforge-format-mxfp4"
        with pytest.raises(GGUFError, match=pattern):
            mx.weight("blk.3.ffn_up.weight", EMPTY)
        with pytest.raises(GGUFError, match=r"type 39 \(MXFP4\) \(1 tensor, e.g. 'blk.3.ffn_up.weight'\)"):
            mx.validate(EMPTY)


def test_tensor_type_ggml_does_not_define(tmp_path, tiny_bytes):
    put(tiny_bytes, tensor_info_at(tiny_bytes, "blk.0.attn_k.weight")["type"], "I", 99)
    (tmp_path / "t99.gguf").write_bytes(tiny_bytes)
    gf = open_gguf(tmp_path / "t99.gguf")
    assert gf.tensors["blk.0.attn_k.weight"].type_name == "type 99"
    for use in (gf.raw, lambda n: gf.weight(n, EMPTY)):
        with pytest.raises(GGUFError, match=r"'blk.0.attn_k.weight' has type 99 \(not a GGML type known to "
                                            r"rocmforge\), which no installed plugin provides$"):
            use("blk.0.attn_k.weight")
