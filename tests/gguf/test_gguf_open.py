"""open_gguf on well-formed files: metadata, tensor infos, raw views, weights, vocab-only files, lifetime."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

from gguf_samples import TINY, TOKENS, every_value_type_kv, tiny_tensors, write_gguf
from rocmforge_core.errors import GGUFError
from rocmforge_core.formats import QuantFormat, dequantize_weight
from rocmforge_core.gguf import GGUFFile, StringArray, open_gguf
from rocmforge_core.hookspecs import hookimpl
from rocmforge_core.registry import PluginRecord, Registry


def test_metadata_values_round_trip(tiny_model):
    with open_gguf(tiny_model) as gf:
        assert gf.version == 3
        assert gf.architecture == "llama"
        md = gf.metadata
        for key, (value, *_rest) in every_value_type_kv().items():
            got = md[key]
            if key.startswith("test.nested"):
                assert [list(x) for x in got] == value
            elif isinstance(got, np.ndarray):
                assert got.tolist() == value
            elif isinstance(value, float) and key == "test.f32":
                assert got == float(np.float32(value))
            else:
                assert got == value and type(got) is type(value), key
        tokens = md["tokenizer.ggml.tokens"]
        assert isinstance(tokens, StringArray) and len(tokens) == len(TOKENS)
        assert tokens.tolist() == TOKENS and list(tokens) == TOKENS
        assert [tokens[i] for i in range(-len(TOKENS), len(TOKENS))] == TOKENS + TOKENS
        assert tokens[3:6] == TOKENS[3:6] and tokens == TOKENS
        assert tokens.tobytes_list() == [t.encode() for t in TOKENS]
        with pytest.raises(IndexError):
            tokens[len(TOKENS)]
        assert md["tokenizer.ggml.scores"].dtype == np.float32


def test_tensor_infos_and_raw_views_match_what_was_written(tmp_path):
    tensors = tiny_tensors(np.random.default_rng(1))
    path = write_gguf(tmp_path / "t.gguf", tensors=tensors, alignment=64)
    with open_gguf(path) as gf:
        assert gf.alignment == 64 and gf.data_offset % 64 == 0
        assert list(gf.tensors) == list(tensors)
        for name, (array, qtype) in tensors.items():
            info = gf.tensors[name]
            assert info.ggml_type == int(qtype) and info.type_name == qtype.name
            assert info.offset % 64 == 0
            raw = gf.raw(name)
            assert raw.dtype == np.uint8 and not raw.flags.writeable
            assert np.shares_memory(raw, gf._data)  # a view of the map, not a copy
            expected = array.view(np.uint8).reshape(int(np.prod(array.shape[:-1])), -1)
            assert raw.shape == expected.shape and np.array_equal(raw, expected)
            logical = array.shape if qtype in (T.F32, T.F16) else (*array.shape[:-1], array.shape[-1] // 34 * 32)
            assert info.shape == logical
            assert info.nbytes == raw.size


class _F32Plugin:
    """A test-only plugin: the core knows no format, so these tests bring one of their own."""

    @hookimpl
    def register_formats(self, register):
        register(QuantFormat("F32", 0, 1, 4, lambda raw: raw.view(np.float32).copy(),
                             lambda rng, n: rng.standard_normal(n).astype(np.float32).view(np.uint8).reshape(n, 4)))
        register(QuantFormat("Q8_0", 8, 32, 34, lambda raw: dequantize(raw, T.Q8_0),
                             lambda rng, n: np.zeros((n, 34), np.uint8)))


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    reg.add_plugin(_F32Plugin(), PluginRecord("test-formats", "test", "0", __name__))
    return reg


def test_weight_is_a_host_view_decodable_by_its_plugin(tmp_path, registry):
    tensors = tiny_tensors(np.random.default_rng(2))
    path = write_gguf(tmp_path / "t.gguf", tensors=tensors)
    with open_gguf(path) as gf:
        w = gf.weight("blk.0.attn_v.weight", registry)
        assert (w.fmt, w.layout, w.shape) == ("F32", "", tensors["blk.0.attn_v.weight"][0].shape)
        assert w.data.base is not None and np.shares_memory(w.data, gf._data)
        assert gf.format_of("blk.0.attn_v.weight", registry).plugin == "test-formats"
        w8 = gf.weight("blk.0.ffn_up.weight", registry)
        assert w8.fmt == "Q8_0" and w8.shape == (TINY["d_ff"], TINY["d_model"])
        assert np.array_equal(registry.format("Q8_0").dequantize(w8.data).reshape(w8.shape),
                              dequantize(tensors["blk.0.ffn_up.weight"][0], T.Q8_0))
        with pytest.raises(GGUFError, match=r"type 1 \(F16\).*rocmforge-format-f16"):
            gf.weight("blk.0.attn_q.weight", registry)
        with pytest.raises(GGUFError, match=r"type 1 \(F16\) \(3 tensors, e\.g\. 'output\.weight'\); "
                                            r"install rocmforge-format-f16$"):
            gf.validate(registry)
        with pytest.raises(GGUFError, match="no tensor named 'nope'"):
            gf.raw("nope")


def test_f32_model_validates_and_dequantizes(tmp_path, registry):
    tensors = tiny_tensors(np.random.default_rng(3), f32_only=True)
    with open_gguf(write_gguf(tmp_path / "t.gguf", tensors=tensors)) as gf:
        gf.validate(registry)
        for name, (array, _) in tensors.items():
            assert np.array_equal(dequantize_weight(gf.weight(name, registry)), array)


def test_version_2_reads_like_version_3(tmp_path, tiny_bytes):
    tiny_bytes[4:8] = (2).to_bytes(4, "little")
    (tmp_path / "v2.gguf").write_bytes(tiny_bytes)
    v2 = open_gguf(tmp_path / "v2.gguf")
    assert v2.version == 2
    v3 = open_gguf(_write(tmp_path / "v3.gguf", tiny_bytes[:4] + (3).to_bytes(4, "little") + tiny_bytes[8:]))
    assert v2.config == v3.config and v2.tensors.keys() == v3.tensors.keys()
    assert all(np.array_equal(v2.raw(n), v3.raw(n)) for n in v2.tensors)


def test_vocab_only_files_open(vocab_files):
    for path in vocab_files:
        with open_gguf(path) as gf:
            assert gf.tensors == {}
            tokens = gf.metadata["tokenizer.ggml.tokens"]
            assert len(tokens) > 30000 and all(isinstance(t, str) for t in tokens.tolist())
            assert isinstance(gf.metadata["tokenizer.ggml.model"], str)


def test_views_outlive_close_and_closed_file_refuses_new_reads(tiny_model):
    gf = open_gguf(tiny_model)
    raw = gf.raw("token_embd.weight")
    tokens = gf.metadata["tokenizer.ggml.tokens"]
    expected = raw.copy()
    gf.close()
    assert np.array_equal(raw, expected) and tokens[0] == "<unk>"
    with pytest.raises(GGUFError, match="closed"):
        gf.raw("token_embd.weight")


def test_missing_path_and_directory_are_gguf_errors(tmp_path):
    with pytest.raises(GGUFError, match="cannot open"):
        open_gguf(tmp_path / "absent.gguf")
    with pytest.raises(GGUFError, match="cannot open"):
        open_gguf(tmp_path)


def test_real_models_open_with_expected_types(gemma_path, smollm2_path):
    with open_gguf(gemma_path) as gf:
        assert {i.type_name for i in gf.tensors.values()} == {"F32", "Q8_0", "Q5_0", "Q4_K", "Q6_K"}
        assert gf.raw("token_embd.weight").shape == (262144, 640 // 32 * 34)
        assert len(gf.metadata["tokenizer.ggml.tokens"]) == 262144
    with open_gguf(smollm2_path) as gf:
        assert {i.type_name for i in gf.tensors.values()} == {"F32", "Q4_1", "Q8_0"}
        assert gf.raw("blk.0.ffn_down.weight").shape == (576, 1536 // 32 * 20)


def test_repr_names_the_file(tiny_model):
    assert "tiny.gguf" in repr(open_gguf(tiny_model)) and isinstance(open_gguf(tiny_model), GGUFFile)


def _write(path, data):
    path.write_bytes(bytes(data))
    return path


def test_load_weight_applies_the_formats_repacker_for_the_backend(tmp_path):
    """The loader side of the repacking hook: a format's repacker for a backend turns the mapped GGUF view into
    that backend's layout when the weight is loaded there."""
    from rocmforge_core.backend import HostBackend

    class TestHost(HostBackend):  # the base class's upload_weight: repack if the format says how
        name = "testhost"

        def devices(self):
            return []

    seen = []

    def to_f32(weight):
        seen.append(weight.data.flags.writeable)
        return weight.with_data(weight.data.view(np.float32).reshape(weight.shape).copy(), "f32")

    class Plugin:
        @hookimpl
        def register_formats(self, register):
            register(QuantFormat("F32", 0, 1, 4, lambda raw: raw.view(np.float32),
                                 lambda rng, n: np.zeros((n, 4), np.uint8), repackers={"testhost": to_f32}))

    reg = Registry()
    reg.add_plugin(Plugin(), PluginRecord("repacking", "test", "0", __name__))
    tensors = tiny_tensors(np.random.default_rng(4), f32_only=True)
    with open_gguf(write_gguf(tmp_path / "t.gguf", tensors=tensors)) as gf:
        w = gf.load_weight("blk.1.ffn_up.weight", TestHost(), reg)
        assert w.layout == "f32" and seen == [False]  # the repacker got the read-only mapped view
        assert np.array_equal(dequantize_weight(w), tensors["blk.1.ffn_up.weight"][0])


def test_metadata_is_read_only(tiny_model):
    gf = open_gguf(tiny_model)
    with pytest.raises(TypeError):
        gf.metadata["general.name"] = "x"
    assert gf.metadata["test.arr_bool"].dtype == np.bool_


@pytest.mark.parametrize("model", ["smollm2_path", "gemma_path"])
def test_real_models_through_the_installed_format_plugins(request, model):
    """With the format plugins installed (`make install`), the real models validate and every tensor type's
    weights decode, through the loader's views, to what gguf-py's dequantizer makes of the same bytes."""
    from rocmforge_core.registry import get_registry

    gf = open_gguf(request.getfixturevalue(model))
    reg = get_registry()
    missing = sorted({i.type_name for i in gf.tensors.values()} - set(reg.formats))
    if missing:
        pytest.skip(f"format plugins for {missing} are not installed (`make install` installs them)")
    gf.validate()
    smallest = {}
    for info in sorted(gf.tensors.values(), key=lambda i: i.nbytes):
        smallest.setdefault(info.ggml_type, info)
    for info in smallest.values():
        w = gf.weight(info.name)
        expected = dequantize(np.asarray(gf.raw(info.name)), T(info.ggml_type)).reshape(info.shape)
        assert w.fmt == info.type_name and np.array_equal(dequantize_weight(w), expected), info.name


def test_empty_arrays(tmp_path):
    """GGUFWriter refuses to write empty arrays, llama.cpp's writer does not: built by hand."""
    import struct

    def kv(key: str, etype: int) -> bytes:
        return struct.pack("<Q", len(key)) + key.encode() + struct.pack("<IIQ", 9, etype, 0)

    path = tmp_path / "empty.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + kv("strings", 8) + kv("floats", 6))
    with open_gguf(path) as gf:
        assert list(gf.metadata["strings"]) == [] and gf.metadata["strings"].tolist() == []
        assert gf.metadata["floats"].shape == (0,) and gf.metadata["floats"].dtype == np.float32
