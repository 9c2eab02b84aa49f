"""The loader's table of GGML type ids against gguf-py's, and a type newer than the table."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from gguf.constants import GGML_QUANT_SIZES

from gguf_samples import tensor_info_at, write_gguf
from rocmforge_core.errors import GGUFError
from rocmforge_core.formats import QuantFormat
from rocmforge_core.gguf import GGML_TYPES, describe_type, open_gguf, plugin_for
from rocmforge_core.hookspecs import hookimpl
from rocmforge_core.registry import PluginRecord, Registry, reset_registry


def test_table_matches_gguf_py():
    assert {t: (name, block, size) for t, (name, block, size) in GGML_TYPES.items()} == \
           {int(t): (t.name, block, size) for t, (block, size) in GGML_QUANT_SIZES.items()}


def test_names_in_errors():
    assert describe_type(39) == "type 39 (MXFP4)"
    assert plugin_for("Q4_K") == "rocmforge-format-q4-k" and plugin_for("MXFP4") == "rocmforge-format-mxfp4"


@pytest.fixture
def registry_with_type_77():
    class Plugin:
        @hookimpl
        def register_formats(self, register):
            register(QuantFormat("NEW4", 77, 16, 9, lambda raw: np.zeros(raw.shape[:-1] + (raw.shape[-1] // 9 * 16,)),
                                 lambda rng, n: np.zeros((n, 9), np.uint8)))

    reg = Registry()
    reg.add_plugin(Plugin(), PluginRecord("new4", "rocmforge-format-new4", "0", __name__))
    reset_registry(reg)
    yield reg
    reset_registry(None)


def test_type_newer_than_the_table_uses_its_plugins_geometry(tmp_path, registry_with_type_77):
    path = write_gguf(tmp_path / "n.gguf", tensors={"w": (np.zeros((3, 64), np.float32), 0)})
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, tensor_info_at(data, "w")["type"], 77)
    path.write_bytes(data)
    with open_gguf(path) as gf:
        info = gf.tensors["w"]
        assert (info.type_name, info.nbytes, gf.raw("w").shape) == ("NEW4", 3 * 4 * 9, (3, 36))
        assert gf.weight("w").fmt == "NEW4"
        gf.validate()
    reset_registry(Registry())
    with open_gguf(path) as gf:
        assert gf.tensors["w"].nbytes == 0
        with pytest.raises(GGUFError, match=r"type 77 \(not a GGML type known to rocmforge\)"):
            gf.validate()
