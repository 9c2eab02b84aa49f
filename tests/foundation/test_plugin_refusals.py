"""Plugins broken the ways their authors break them. Each is refused as a whole (nothing it registered stays, other
plugins keep working) with one line that says what is wrong and what was expected."""

from __future__ import annotations

import sys
from dataclasses import replace
from types import SimpleNamespace

import pytest

from rocmforge_core import ops
from rocmforge_core.backend import DeviceInfo, HostBackend
from rocmforge_core.cli.plugins import collect
from rocmforge_core.conformance import run_conformance
from rocmforge_core.hookspecs import hookimpl
from rocmforge_core.models.llama import Llama
from rocmforge_core.ops import ArgInfo, Kernel, Signature
from rocmforge_core.registry import describe_error

from .helpers import add, plugin, reference_registry


class Toy(HostBackend):
    name = "toy"

    def devices(self):
        return [DeviceInfo("toy", "host", 0, 1)]


def rmsnorm(name, backend="toy", **kwargs):
    return Kernel("rmsnorm", backend, name, ops.reference("rmsnorm"), **kwargs)


RMS = Signature("rmsnorm", (ArgInfo((1, 64), "f32"), ArgInfo((64,), "f32")), (("eps", 1e-6),))


def refused(registry, name, obj):
    """Add ``obj`` as plugin ``name``; assert it was refused as a whole; its error."""
    record = add(registry, name, obj)
    assert not record.ok and record.provides == {}
    assert "\n" not in record.error
    assert registry.pm.get_plugin(name) is None
    assert not [k for k in registry.kernels if k.plugin == name]
    for table in (registry.backends, registry.formats, registry.architectures):
        assert not [v for v in table.values() if v.plugin == name]
    assert registry.plugins["reference"].ok and "reference" in registry.backends  # everything else works
    return record.error


# -- names are unique ---------------------------------------------------------------------------------------------
def test_a_kernel_name_another_plugin_registered_is_refused_naming_kernel_and_owner():
    registry = reference_registry()
    error = refused(registry, "copycat", plugin(backends=[Toy()], kernels=[rmsnorm("reference.rmsnorm")]))
    assert error == "register_kernels: kernel 'reference.rmsnorm' is already provided by plugin 'reference'"
    assert "toy" not in registry.backends  # its backend went with it
    owner = [k for k in registry.kernels if k.name == "reference.rmsnorm"]
    assert [k.plugin for k in owner] == ["reference"] and owner[0].backend == "reference"


def test_a_kernel_name_registered_twice_by_one_plugin_is_refused():
    registry = reference_registry()
    error = refused(registry, "stutter", plugin(backends=[Toy()], kernels=[rmsnorm("toy.rms"), rmsnorm("toy.rms")]))
    assert error == "register_kernels: kernel 'toy.rms' is already provided by plugin 'stutter'"


def test_a_refused_plugin_frees_its_kernel_names():
    registry = reference_registry()
    refused(registry, "first", plugin(kernels=[rmsnorm("toy.rms", backend="reference"), "junk"]))
    assert add(registry, "second", plugin(kernels=[rmsnorm("toy.rms", backend="reference")])).ok
    registry.remove_plugin("second")
    assert add(registry, "third", plugin(kernels=[rmsnorm("toy.rms", backend="reference")])).ok


def test_a_format_reusing_another_formats_ggml_type_is_refused(example_plugin):
    registry = reference_registry()
    add(registry, "example", example_plugin)
    twin = replace(example_plugin.tq2_0.TQ2_0, name="TQ2_X")
    error = refused(registry, "twin", plugin(formats=[twin]))
    assert error == ("register_formats: format TQ2_X has ggml type 35, which format TQ2_0 of plugin 'example' "
                     "already has")


# -- what register takes ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("hooks, expected", [
    (dict(backends=[Toy]), "register_backends: got the class Toy; register an instance: register(Toy())"),
    (dict(architectures=[Llama]),
     "register_architectures: got the class Llama; register an instance: register(Llama())"),
    (dict(backends=[SimpleNamespace(name="duck")]),
     "register_backends: got SimpleNamespace namespace(name='duck'); expected a rocmforge_core.backend.Backend "
     "instance"),
    (dict(formats=[{"name": "Q9_9"}]),
     "register_formats: got dict {'name': 'Q9_9'}; expected a rocmforge_core.formats.QuantFormat instance"),
    (dict(architectures=[Toy()]), "register_architectures: got Toy"),
    (dict(kernels=["not a kernel"]),
     "register_kernels: got str 'not a kernel'; expected a rocmforge_core.ops.Kernel instance"),
    (dict(kernels=[[rmsnorm("a"), rmsnorm("b")]]), "register_kernels: got list [Kernel("),
    (dict(kernels=[Kernel]), "register_kernels: got the class Kernel; register an instance: register(Kernel())"),
])
def test_register_refuses_what_is_not_an_instance_of_the_hooks_interface(hooks, expected):
    error = refused(reference_registry(), "wrong", plugin(**hooks))
    assert error.startswith(expected), error
    if "list [" in expected:
        assert error.endswith("call register once per item, with a rocmforge_core.ops.Kernel instance")


@pytest.mark.parametrize("hooks, expected", [
    (dict(backends=[type("Nameless", (Toy,), {"name": ""})()]),
     "register_backends: backend Nameless has no name: set its name attribute (a non-empty string), got ''"),
    (dict(architectures=[type("Anon", (Llama,), {"name": ""})()]),
     "register_architectures: architecture Anon has no name"),
    (dict(kernels=[Kernel("rmsnrom", "toy", "toy.rms", ops.reference("rmsnorm"))]),
     "register_kernels: kernel 'toy.rms' implements unknown op 'rmsnrom'; the ops are embedding, matmul,"),
    (dict(kernels=[rmsnorm("toy.rms", backend="")]),
     "register_kernels: kernel 'toy.rms': backend must be a backend name, got str ''"),
    (dict(kernels=[Kernel("rmsnorm", "toy", "toy.rms", "rmsnorm")]),
     "register_kernels: kernel 'toy.rms': fn must be callable, got str 'rmsnorm'"),
    (dict(kernels=[rmsnorm("toy.rms", supports=True)]),
     "register_kernels: kernel 'toy.rms': supports must be callable, got bool True"),
])
def test_register_refuses_items_that_would_break_later(hooks, expected):
    error = refused(reference_registry(), "sloppy", plugin(**hooks))
    assert error.startswith(expected), error


@pytest.mark.parametrize("change, expected", [
    (dict(block_size=0), "block_size must be an integer >= 1, got int 0"),
    (dict(type_size="66"), "type_size must be an integer >= 1, got str '66'"),
    (dict(ggml_type=-1), "ggml_type must be an integer >= 0, got int -1"),
    (dict(dequantize=None), "dequantize must be callable, got NoneType None"),
    (dict(quantize="ggml"), "quantize must be callable or None, got str 'ggml'"),
    (dict(kernel_sources=["tq2.hip"]), "kernel_sources must be a dict keyed by backend name, got list ['tq2.hip']"),
])
def test_register_refuses_formats_that_would_break_later(example_plugin, change, expected):
    fmt = replace(example_plugin.tq2_0.TQ2_0, **change)
    error = refused(reference_registry(), "sloppy", plugin(formats=[fmt]))
    assert error == f"register_formats: format 'TQ2_0': {expected}"


def test_register_takes_one_item_per_call():
    @hookimpl
    def register_kernels(register):
        register(rmsnorm("a", backend="reference"), rmsnorm("b", backend="reference"))
    error = refused(reference_registry(), "greedy", SimpleNamespace(register_kernels=register_kernels))
    assert error == "register_kernels: register takes one item per call, got 2 arguments"


# -- hooks as written -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("misspelt, meant", [("registr_backends", "register_backends"),
                                             ("register_kernel", "register_kernels")])
def test_a_misspelt_hook_is_a_load_error_naming_it_and_the_known_hooks(misspelt, meant):
    registry = reference_registry()
    obj = SimpleNamespace(register_formats=hookimpl(lambda register: None),
                          **{misspelt: hookimpl(lambda register: register(Toy()))})
    error = refused(registry, "typo", obj)
    assert error == (f"implements unknown hook {misspelt!r} (did you mean {meant!r}?); the hooks are "
                     "register_backends, register_kernels, register_formats, register_architectures")
    assert add(registry, "fixed", plugin(backends=[Toy()])).ok  # pluggy keeps no trace of the withdrawn one


def test_an_unknown_hook_marked_optional_is_tolerated_as_pluggy_does():
    obj = SimpleNamespace(register_kernels=hookimpl(lambda register: None),
                          register_samplers=hookimpl(optionalhook=True)(lambda register: None))
    assert add(reference_registry(), "future", obj).ok


def test_a_hook_without_the_hookimpl_marker_is_a_load_error():
    def register_kernels(register):
        register(rmsnorm("toy.rms", backend="reference"))
    obj = SimpleNamespace(register_formats=hookimpl(lambda register: None), register_kernels=register_kernels)
    error = refused(reference_registry(), "unmarked", obj)
    assert error == ("register_kernels is not marked as a hook implementation, so it would never be called: "
                     "decorate it with @hookimpl (from rocmforge_core.hookspecs import hookimpl)")


def test_a_plugin_implementing_no_hook_is_a_load_error():
    other_project = __import__("pluggy").HookimplMarker("llm")  # hooks marked for another pluggy project
    error = refused(reference_registry(), "empty", SimpleNamespace(register_models=other_project(lambda register: 0)))
    assert error.startswith("implements none of the hooks register_backends, register_kernels, register_formats, "
                            "register_architectures: decorate them with @hookimpl")


def test_a_hook_that_returns_its_items_instead_of_registering_them_is_refused():
    obj = SimpleNamespace(register_backends=hookimpl(lambda register: register(Toy())),
                          register_kernels=hookimpl(lambda register: [rmsnorm("toy.rms")]))
    error = refused(reference_registry(), "returns", obj)
    assert error.startswith("register_kernels returned list [Kernel(")
    assert error.endswith("instead of calling register(item) once per item")


def test_a_hook_that_yields_its_items_is_refused():
    def register_kernels(register):
        yield rmsnorm("toy.rms")
    error = refused(reference_registry(), "yields", SimpleNamespace(register_kernels=hookimpl(register_kernels)))
    assert error.startswith("register_kernels returned generator <generator object")


def test_a_hook_without_the_register_argument_is_refused():
    error = refused(reference_registry(), "noarg", SimpleNamespace(register_kernels=hookimpl(lambda: None)))
    assert error == "register_kernels takes no 'register' argument; define it as def register_kernels(register)"


def test_a_hook_with_other_arguments_is_refused_in_one_line():
    error = refused(reference_registry(), "args", SimpleNamespace(register_kernels=hookimpl(lambda registry: None)))
    assert error.startswith("Plugin 'args' for hook 'register_kernels' hookimpl definition: <lambda>(registry) "
                            "Argument(s) {'registry'} are declared in the hookimpl but can not be found in the "
                            "hookspec")


def test_a_hook_calling_sys_exit_is_a_load_error_not_the_end_of_the_process():
    quitter = SimpleNamespace(register_kernels=hookimpl(lambda register: sys.exit(3)))
    error = refused(reference_registry(), "quitter", quitter)
    assert error.startswith("register_kernels: SystemExit: 3 (")


# -- the plugin object ------------------------------------------------------------------------------------------
def test_a_class_as_the_plugin_object_is_refused():
    class MyPlugin:
        @hookimpl
        def register_backends(self, register):
            register(Toy())
    error = refused(reference_registry(), "cls", MyPlugin)
    assert error == ("the plugin object is the class MyPlugin; point the entry point at a module or an instance "
                     "(MyPlugin())")
    assert add(reference_registry(), "instance", MyPlugin()).ok


def test_one_object_under_two_plugin_names_is_refused_the_second_time():
    registry = reference_registry()
    obj = plugin(backends=[Toy()])
    assert add(registry, "once", obj).ok
    error = refused(registry, "twice", obj)
    assert error == "the same plugin object is already registered as plugin 'once'"
    assert registry.backends["toy"].plugin == "once"


# -- capability answers -----------------------------------------------------------------------------------------
def test_a_supports_that_answers_with_something_else_than_a_verdict_is_a_no_that_says_so():
    registry = reference_registry()
    kernel = Kernel("rmsnorm", "reference", "lazy.rms", ops.reference("rmsnorm"), lambda sig: True, priority=9)
    assert add(registry, "lazy", plugin(kernels=[kernel])).ok
    top = registry.kernels_for(RMS)
    assert top[0].kernel.name == "reference.rmsnorm"  # capable kernels first: the lazy one is not capable
    lazy = [c for c in top if c.kernel.name == "lazy.rms"][0]
    assert not lazy.verdict.ok
    assert lazy.verdict.reason == ("lazy.rms: supports() returned bool True, not a Verdict "
                                   "(answer with rocmforge_core.ops.yes/no)")
    assert collect(registry)["matrix"]["rmsnorm"]["reference"]["f32"]["kernel"] == "reference.rmsnorm"
    results = [r for r in run_conformance(registry, plugin="lazy") if r.status == "fail"]
    assert results and all("supports() returned bool True, not a Verdict" in r.message for r in results)


def test_errors_are_one_line():
    try:
        raise ValueError("first line\n  second line")
    except ValueError as exc:
        assert describe_error(exc).startswith("ValueError: first line second line (test_plugin_refusals.py:")


def test_a_plugin_that_failed_to_load_fails_the_conformance_kit():
    registry = reference_registry()
    refused(registry, "broken", plugin(kernels=["junk"]))
    named = run_conformance(registry, plugin="broken")
    assert [(r.name, r.status) for r in named] == [("plugin.broken[load]", "fail")]
    assert named[0].message.startswith("plugin 'broken' failed to load: register_kernels: got str 'junk'")
    everything = run_conformance(registry)
    assert [r.name for r in everything if r.status == "fail"] == ["plugin.broken[load]"]
    assert not [r for r in run_conformance(registry, plugin="reference") if r.name.startswith("plugin.")]
