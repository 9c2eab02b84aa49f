"""`rocmforge plugins`: the table, --json, broken plugins listed with their errors, ROCMFORGE_PLUGINS, --check."""

from __future__ import annotations

import json

import pytest

from rocmforge_core import ops
from rocmforge_core.cli import main
from rocmforge_core.cli.plugins import collect
from rocmforge_core.registry import registry_in_use

from .helpers import add, plugin, plugins_json, reference_registry, run_cli, write_dist

BROKEN_IMPORT = """
    raise RuntimeError("this plugin is broken on purpose")
"""

BROKEN_REGISTER = """
    from rocmforge_core.backend import DeviceInfo, HostBackend
    from rocmforge_core.hookspecs import hookimpl

    class Half(HostBackend):
        name = "half"
        def devices(self):
            return [DeviceInfo("half", "host", 0, 1)]

    @hookimpl
    def register_backends(register):
        register(Half())

    @hookimpl
    def register_kernels(register):
        raise ValueError("kernel table is corrupt")
"""

GHOST = """
    from rocmforge_core.backend import HostBackend
    from rocmforge_core.hookspecs import hookimpl
    from rocmforge_core.ops import Kernel, no, reference, yes

    class Ghost(HostBackend):
        name = "ghost"
        def available(self):
            return no("the ghost runtime is not installed")
        def devices(self):
            raise RuntimeError("no devices without a runtime")

    class Moody(HostBackend):
        name = "moody"
        def available(self):
            raise OSError("driver exploded")
        def devices(self):
            return []

    @hookimpl
    def register_backends(register):
        register(Ghost())
        register(Moody())

    @hookimpl
    def register_kernels(register):
        register(Kernel("rmsnorm", "ghost", "ghost.rmsnorm", reference("rmsnorm"),
                        lambda sig: yes("f32") if sig.args[0].shape[-1] % 64 == 0 else no("d % 64 != 0")))
"""


MISSPELT = """
    from rocmforge_core.hookspecs import hookimpl

    @hookimpl
    def register_kernel(register):
        pass
"""

QUITS = """
    import sys
    sys.exit("this plugin quits on import")
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    write_dist(site, "rocmforge-broken-import", "broken_import", "rocmforge_broken_import", BROKEN_IMPORT)
    write_dist(site, "rocmforge-broken-register", "broken_register", "rocmforge_broken_register", BROKEN_REGISTER)
    write_dist(site, "rocmforge-ghost", "ghost", "rocmforge_ghost", GHOST)
    write_dist(site, "rocmforge-misspelt", "misspelt", "rocmforge_misspelt", MISSPELT)
    write_dist(site, "rocmforge-quits", "quits", "rocmforge_quits", QUITS)
    return site


def test_core_alone_says_no_backend_plugin_is_installed():
    report = plugins_json(plugins="reference")
    assert [p["name"] for p in report["plugins"]] == ["reference"]
    assert report["plugins"][0]["distribution"] == "rocmforge" and report["plugins"][0]["ok"]
    ref = report["backends"]["reference"]
    assert ref["available"] and ref["devices"][0]["name"] == "numpy"
    assert "No backend plugin is installed" in report["notice"]
    table = run_cli("plugins", plugins="reference")
    assert table.returncode == 0 and "No backend plugin is installed" in table.stdout
    assert "pip install 'rocmforge[cpu]'" in table.stdout


def test_broken_plugins_are_listed_with_their_errors_while_everything_else_works(site):
    names = "reference,broken_import,broken_register,ghost"
    report = plugins_json(plugins=names, path=site)
    plugins = {p["name"]: p for p in report["plugins"]}
    assert set(plugins) == set(names.split(","))
    assert plugins["broken_import"]["error"].startswith("RuntimeError: this plugin is broken on purpose")
    assert plugins["broken_import"]["distribution"] == "rocmforge-broken-import"
    assert plugins["broken_register"]["error"].startswith("register_kernels: ValueError: kernel table is corrupt")
    assert "half" not in report["backends"]  # its working hook was withdrawn with the plugin
    assert plugins["reference"]["ok"] and plugins["ghost"]["ok"]
    assert report["backends"]["reference"]["available"]
    assert report["matrix"]["matmul"]["reference"]["f32"]["ok"]

    table = run_cli("plugins", plugins=names, path=site)
    assert table.returncode == 0, table.stderr
    assert "error: RuntimeError: this plugin is broken on purpose" in table.stdout
    check = run_cli("plugins", "--check", "reference", plugins=names, path=site)
    assert check.returncode == 0 and "0 failed" in check.stdout, check.stdout + check.stderr


def test_a_misspelt_hook_and_a_sys_exit_on_import_are_listed_as_load_errors(site):
    report = plugins_json(plugins="reference,misspelt,quits", path=site)
    plugins = {p["name"]: p for p in report["plugins"]}
    assert plugins["misspelt"]["error"] == ("implements unknown hook 'register_kernel' (did you mean "
                                            "'register_kernels'?); the hooks are register_backends, register_kernels, "
                                            "register_formats, register_architectures")
    assert plugins["quits"]["error"].startswith("SystemExit: this plugin quits on import (rocmforge_quits.py:")
    assert plugins["reference"]["ok"]
    table = run_cli("plugins", plugins="reference,misspelt,quits", path=site)
    assert table.returncode == 0 and "error: implements unknown hook 'register_kernel'" in table.stdout


def test_check_of_a_plugin_that_failed_to_load_fails_naming_it_and_its_error(site):
    names = "reference,broken_import,broken_register"
    one = run_cli("plugins", "--check", "broken_import", plugins=names, path=site)
    assert one.returncode == 1, one.stdout + one.stderr
    assert one.stdout.splitlines() == ["FAIL  plugin.broken_import[load]: plugin 'broken_import' failed to load: "
                                       "RuntimeError: this plugin is broken on purpose (rocmforge_broken_import.py:2)"]
    assert "0 passed, 1 failed" in one.stderr and "Traceback" not in one.stderr
    every = run_cli("plugins", "--check", plugins=names, path=site)
    assert every.returncode == 1
    assert [line.split(":")[0] for line in every.stdout.splitlines() if line.startswith("FAIL")] == \
        ["FAIL  plugin.broken_import[load]", "FAIL  plugin.broken_register[load]"]


@pytest.mark.parametrize("command", [["run", "--prompt", "hi"], ["bench"], ["serve"]])
def test_model_commands_warn_once_per_failed_plugin_before_loading_the_model(command, tmp_path, capsys):
    registry = reference_registry()
    add(registry, "broken", plugin(kernels=["junk"]))
    add(registry, "also_broken", plugin(backends=[1]))
    argv = command + ["--model", str(tmp_path / "missing.gguf")]
    with registry_in_use(registry):
        assert main(argv) == 1
    lines = capsys.readouterr().err.splitlines()
    warnings = [line for line in lines if "warning" in line]
    assert warnings == [
        "rocmforge: warning: plugin also_broken failed to load: register_backends: got int 1; expected a "
        "rocmforge_core.backend.Backend instance",
        "rocmforge: warning: plugin broken failed to load: register_kernels: got str 'junk'; expected a "
        "rocmforge_core.ops.Kernel instance"]
    assert lines[:2] == warnings and lines[-1].startswith("rocmforge: error: ")  # before the model, not instead
    with registry_in_use(reference_registry()):
        assert main(argv) == 1
    assert "warning" not in capsys.readouterr().err


def test_plugins_lists_failures_itself_without_a_warning(capsys):
    registry = reference_registry()
    add(registry, "broken", plugin(kernels=["junk"]))
    with registry_in_use(registry):
        assert main(["plugins"]) == 0
    out, err = capsys.readouterr()
    assert "warning" not in err and "error: register_kernels: got str 'junk'" in out


def test_unavailable_backends_report_why_and_keep_their_capabilities(site):
    report = plugins_json(plugins="reference,ghost", path=site)
    ghost, moody = report["backends"]["ghost"], report["backends"]["moody"]
    assert not ghost["available"] and ghost["reason"] == "the ghost runtime is not installed"
    assert ghost["devices"] == []
    assert not moody["available"] and "OSError: driver exploded" in moody["reason"]
    cell = report["matrix"]["rmsnorm"]["ghost"]["f32"]
    assert cell == {"ok": True, "reason": "f32", "kernel": "ghost.rmsnorm", "layout": ""}  # capability, not availability
    assert not report["matrix"]["add"]["ghost"]["f32"]["ok"]
    assert "notice" not in report  # a backend plugin is installed, even if it cannot run here


def test_rocmforge_plugins_limits_loading_and_reports_unknown_names(site):
    report = plugins_json(plugins="reference", path=site)
    assert [p["name"] for p in report["plugins"]] == ["reference"]
    assert set(report["backends"]) == {"reference"}
    typo = {p["name"]: p for p in plugins_json(plugins="reference,refrence", path=site)["plugins"]}
    assert typo["reference"]["ok"] and "no installed distribution" in typo["refrence"]["error"]


def test_check_reports_unknown_names_in_one_sentence():
    proc = run_cli("plugins", "--check", "nope", plugins="reference")
    assert proc.returncode == 1
    assert proc.stderr.startswith("rocmforge: error: conformance: no plugin or backend named nope")
    assert "Traceback" not in proc.stderr


def test_json_lists_formats_by_gguf_name_and_a_matrix_per_format(example_plugin):
    registry = reference_registry()
    add(registry, "example", example_plugin)
    report = json.loads(json.dumps(collect(registry)))
    assert report["formats"]["TQ2_0"] == {"ggml_type": 35, "block_size": 256, "type_size": 66, "plugin": "example",
                                          "quantize": True, "kernel_sources": {}, "repackers": []}
    assert set(report["matrix"]) == set(ops.OP_NAMES)
    for op in ("matmul", "dequant", "embedding"):
        assert report["matrix"][op]["reference"]["TQ2_0"]["ok"]
        assert report["matrix"][op]["reference"]["TQ2_0"]["layout"] == "f32"  # as the reference's upload leaves it
    assert report["matrix"]["rmsnorm"]["reference"]["f32"]["kernel"] == "reference.rmsnorm"  # priority 0 > -1
    kernels = {k["name"]: k for k in report["kernels"]}
    assert kernels["example.rmsnorm"] == {"name": "example.rmsnorm", "op": "rmsnorm", "backend": "reference",
                                          "plugin": "example", "priority": -1}


def test_representative_signatures_are_valid_calls():
    for op in ops.OP_NAMES:
        spec = ops.spec(op)
        sig = spec.representative("Q4_K" if spec.weights else "f32", "")
        assert sig.op == op and sig.args
        shape, dtype = spec.out_shape(sig.args, dict(sig.params))
        assert all(isinstance(d, int) and d > 0 for d in shape) and dtype in ("f32", "i32")
        flops, nbytes = spec.work(sig, None)
        assert flops >= 0 and nbytes > 0
