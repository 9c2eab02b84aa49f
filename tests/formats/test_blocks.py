"""The shared block helpers, on their own: bit unpacking, 6-bit scale packing, device-file discovery."""

from __future__ import annotations

import numpy as np
import pytest

from rocmforge_core import blocks as B


@pytest.mark.parametrize("bits", [1, 2, 4])
@pytest.mark.parametrize("group", [1, 4, 16, 32])
def test_unpack_bits_order_and_pack_inverse(bits, group):
    rng = np.random.default_rng(bits * 100 + group)
    packed = rng.integers(0, 256, size=(3, 64), dtype=np.uint8)
    fields = B.unpack_bits(packed, bits, group)
    per_byte = 8 // bits
    assert fields.shape == (3, 64 * per_byte)
    # field j of byte k of chunk c sits at c * group * per_byte + j * group + k
    c, j, k = 1, per_byte - 1, group - 1
    byte = packed[2, c * group + k]
    assert fields[2, c * group * per_byte + j * group + k] == (byte >> (j * bits)) & ((1 << bits) - 1)
    assert np.array_equal(B.pack_bits(fields, bits, group), packed)


def test_unpack_bits_group_one_is_little_endian_bit_order():
    packed = np.array([[0b00000101, 0b10000000]], dtype=np.uint8)
    assert np.flatnonzero(B.unpack_bits(packed, 1, 1)[0]).tolist() == [0, 2, 15]


def test_scale_min_6bit_layout():
    scales = np.arange(8, dtype=np.uint8) * 9 % 64
    mins = (np.arange(8, dtype=np.uint8) * 5 + 33) % 64
    packed = np.zeros((1, 12), dtype=np.uint8)
    packed[0, 0:4] = scales[:4] | ((scales[4:] >> 4) << 6)
    packed[0, 4:8] = mins[:4] | ((mins[4:] >> 4) << 6)
    packed[0, 8:12] = (scales[4:] & 15) | ((mins[4:] & 15) << 4)
    got_scales, got_mins = B.unpack_scale_min_6bit(packed)
    assert got_scales[0].tolist() == scales.tolist() and got_mins[0].tolist() == mins.tolist()


def test_scales_6bit_16_layout():
    values = (np.arange(16, dtype=np.uint8) * 7 + 3) % 64
    packed = np.zeros((1, 12), dtype=np.uint8)
    packed[0, 0:8] = (values[:8] & 15) | ((values[8:] & 15) << 4)
    for i, v in enumerate(values):
        packed[0, 8 + i % 4] |= (v >> 4) << (2 * (i // 4))
    assert B.unpack_scales_6bit_16(packed)[0].tolist() == values.tolist()


def test_round_half_away_matches_c_roundf():
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999997, -0.49999997, 8388607.5, 3.0, -0.0], dtype=np.float32)
    assert B.round_half_away(x).tolist() == [1.0, 2.0, 3.0, -1.0, -3.0, 0.0, -0.0, 8388608.0, 3.0, -0.0]


def test_device_sources_globs_device_files(tmp_path):
    plugin = tmp_path / "plugin.py"
    plugin.write_text("")
    (tmp_path / "device.hip").write_text("// hip")
    (tmp_path / "device.cuda").write_text("// cuda")
    (tmp_path / "device.notes").mkdir()  # a directory is not a source
    (tmp_path / "cpu.py").write_text("")
    assert B.device_sources(plugin) == {"hip": tmp_path / "device.hip", "cuda": tmp_path / "device.cuda"}
    assert B.device_sources(tmp_path / "elsewhere" / "plugin.py") == {}


def test_deferred_imports_on_first_call_only():
    missing = B.deferred("rocmforge_no_such_module_here")  # naming it imports nothing
    with pytest.raises(ModuleNotFoundError):
        missing(None)
    assert B.deferred("math", "sqrt")(9.0) == 3.0
