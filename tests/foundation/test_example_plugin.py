"""The example third-party plugin (examples/plugin-example): its format is bit-exact with gguf-py, and the
third-party path works end to end: pip install from its directory, listed, conformance kit passes, uninstall."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from .helpers import CLI, EXAMPLE, plugins_json, run_python

gguf = pytest.importorskip("gguf", reason="gguf-py (the independent TQ2_0 reference) is a test dependency")
quants = gguf.quants
TQ2_0_TYPE = gguf.GGMLQuantizationType.TQ2_0


def test_tq2_0_dequantize_is_bit_exact_with_gguf(example_plugin):
    tq2_0 = example_plugin.tq2_0
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (6, 3 * 66), dtype=np.uint8)  # every 2-bit field value, incl. the unused 3
    scales = rng.standard_normal((6, 3)).astype(np.float16) * np.float16(4)
    scales[0, 0] = np.float16(-0.0)
    for b in range(3):
        raw[:, b * 66 + 64:b * 66 + 66] = scales[:, b:b + 1].view(np.uint8)
    expected = quants.dequantize(raw, TQ2_0_TYPE)
    actual = tq2_0.dequantize(raw)
    assert actual.dtype == np.float32 and np.array_equal(actual.view(np.uint32), expected.view(np.uint32))


def test_tq2_0_quantize_is_bit_exact_with_gguf(example_plugin):
    tq2_0 = example_plugin.tq2_0
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 512)).astype(np.float32) * np.array([[1], [3], [1e-4], [0], [1]], np.float32)
    x[4, :256] = np.linspace(-2, 2, 256)  # exact halves of the block maximum: ties go away from zero
    x[4, 256:] = np.float32(0.49999997) * rng.choice([-1, 1], 256).astype(np.float32)
    x[4, 256] = 1.0
    assert np.array_equal(tq2_0.quantize(x), quants.quantize(x, TQ2_0_TYPE))


def test_tq2_0_random_blocks_are_valid_ternary(example_plugin):
    tq2_0 = example_plugin.tq2_0
    blocks = tq2_0.random_blocks(np.random.default_rng(2), 8)
    assert blocks.shape == (8, 66) and blocks.dtype == np.uint8
    values = quants.dequantize(blocks, TQ2_0_TYPE).reshape(8, 256)
    scale = blocks[:, 64:].copy().view(np.float16).astype(np.float32)
    assert np.isin(values / scale, [-1.0, 0.0, 1.0]).all()


def _make_venv(path):
    """A venv that sees this interpreter's packages (the core and pytest), so pip installs only the plugin."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    # addsitedir (not a bare path line) so that the editable installs' own .pth files take effect too
    (Path(site) / "_rocmforge_host.pth").write_text("".join(f"import site; site.addsitedir({p!r})\n"
                                                            for p in sorted(ours)))
    return python


def test_install_list_check_uninstall(tmp_path):
    source = tmp_path / "plugin-example"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    python = _make_venv(tmp_path / "venv")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "-q", "--disable-pip-version-check"]
    only = "reference,example"

    def not_installed(report):
        example = {p["name"]: p for p in report["plugins"]}["example"]  # named in ROCMFORGE_PLUGINS, not found
        return "no installed distribution" in example["error"] and "TQ2_0" not in report["formats"]

    assert not_installed(plugins_json(plugins=only, python=str(python)))

    subprocess.run(pip + ["install", "--no-deps", str(source)], check=True, capture_output=True, text=True)
    report = plugins_json(plugins=only, python=str(python))
    plugin = {p["name"]: p for p in report["plugins"]}["example"]
    assert plugin["ok"] and plugin["distribution"] == "rocmforge-example-plugin" and plugin["version"] == "0.1.0"
    assert plugin["provides"] == {"formats": ["TQ2_0"], "kernels": ["example.rmsnorm"]}
    assert report["formats"]["TQ2_0"]["ggml_type"] == 35 and report["formats"]["TQ2_0"]["plugin"] == "example"
    assert report["matrix"]["matmul"]["reference"]["TQ2_0"]["ok"]

    # the plugin's own tests (against the installed package) plus the kit's generated checks
    kit = run_python(["-m", "pytest", "-p", "no:cacheprovider", "-v", "--rocmforge-conformance=example",
                      str(source / "tests")], plugins=only, python=str(python), cwd=tmp_path)
    assert kit.returncode == 0, kit.stdout + kit.stderr
    assert "failed" not in kit.stdout and "skipped" not in kit.stdout
    assert "test_example.py::test_conforms PASSED" in kit.stdout
    assert "rocmforge-conformance::example.rmsnorm[" in kit.stdout
    assert "rocmforge-conformance::reference.matmul[" in kit.stdout and "TQ2_0 m=64] PASSED" in kit.stdout

    subprocess.run(pip + ["uninstall", "-y", "rocmforge-example-plugin"], check=True, capture_output=True, text=True)
    assert not_installed(plugins_json(plugins=only, python=str(python)))
    assert "example" not in {p["name"] for p in plugins_json(plugins="reference", python=str(python))["plugins"]}


def test_an_installed_copy_with_a_misspelt_hook_is_withdrawn_and_fails_its_check(tmp_path):
    """The example as an author might break it: `register_kernel` for `register_kernels`, pip-installed."""
    source = tmp_path / "plugin-example"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    init = source / "rocmforge_example_plugin" / "__init__.py"
    init.write_text(init.read_text().replace("def register_kernels(", "def register_kernel("))
    python = _make_venv(tmp_path / "venv")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "-q", "--disable-pip-version-check",
                    "install", "--no-deps", str(source)], check=True, capture_output=True, text=True)
    only = "reference,example"
    report = plugins_json(plugins=only, python=str(python))
    example = {p["name"]: p for p in report["plugins"]}["example"]
    assert example["error"].startswith("implements unknown hook 'register_kernel' (did you mean 'register_kernels'?)")
    assert example["provides"] == {} and "TQ2_0" not in report["formats"]  # its correct hook went with it
    check = run_python(["-c", CLI, "plugins", "--check", "example"], plugins=only, python=str(python))
    assert check.returncode == 1
    assert check.stdout.startswith("FAIL  plugin.example[load]: plugin 'example' failed to load: implements unknown")
    run = run_python(["-c", CLI, "run", "--prompt", "hi", "--model", str(tmp_path / "missing.gguf")], plugins=only,
                     python=str(python))
    assert run.returncode == 1
    assert run.stderr.startswith("rocmforge: warning: plugin example failed to load: implements unknown hook")
    assert run.stderr.count("warning: plugin") == 1
