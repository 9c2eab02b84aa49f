"""Helpers of the foundation tests: fake installed distributions, CLI runs in a subprocess, test registries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

from rocmforge_core import reference_backend
from rocmforge_core.hookspecs import hookimpl
from rocmforge_core.registry import PluginRecord, Registry

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plugin-example"
CLI = "import sys; from rocmforge_core.cli import main; sys.exit(main())"


def write_dist(site: Path, dist: str, entry_point: str, module: str, source: str) -> None:
    """An installed distribution as pip leaves it: a module plus a dist-info naming its ``rocmforge`` entry point."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[rocmforge]\n{entry_point} = {module}\n")


def run_cli(*args: str, plugins: str, python: str = sys.executable, path: Path | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`rocmforge ARGS` in a fresh interpreter, loading only the entry points ``plugins`` (ROCMFORGE_PLUGINS)."""
    return run_python(["-c", CLI, *args], plugins=plugins, python=python, path=path, cwd=cwd)


def run_python(argv: list[str], *, plugins: str, python: str = sys.executable, path: Path | None = None,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "ROCMFORGE_PLUGINS": plugins}
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return subprocess.run([python, *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def plugins_json(**kwargs) -> dict:
    proc = run_cli("plugins", "--json", **kwargs)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def reference_registry() -> Registry:
    """A registry with only the core's reference backend, loaded the way entry points load it."""
    registry = Registry()
    registry.add_plugin(reference_backend, PluginRecord("reference", "rocmforge", "test", "rocmforge_core.reference_backend"))
    return registry


def add(registry: Registry, name: str, plugin: object) -> PluginRecord:
    """Register a plugin object under ``name``, as a test fixture does with pluggy's pm.register."""
    return registry.add_plugin(plugin, PluginRecord(name, "test", "0", name))


def plugin(*, backends=(), kernels=(), formats=(), architectures=(), fail_in=None) -> SimpleNamespace:
    """A plugin object whose hooks register the given items in order; ``fail_in`` names a hook that then raises."""
    def hook(items, name):
        def impl(register):
            for item in items:
                register(item)
            if fail_in == name:
                raise RuntimeError(f"{name} broke on purpose")
        impl.__name__ = name
        return hookimpl(impl)
    provided = {"register_backends": backends, "register_kernels": kernels, "register_formats": formats,
                "register_architectures": architectures}
    return SimpleNamespace(**{name: hook(items, name) for name, items in provided.items()})
