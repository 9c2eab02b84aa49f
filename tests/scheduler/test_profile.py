"""Profiles: schema and name checks with file and line, shadowing and no-match warnings, the CLI, the docs."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from rocmforge_core import ops
from rocmforge_core.cli import profile as profile_cli
from rocmforge_core.errors import ProfileError
from rocmforge_core.scheduler import reference_doc
from rocmforge_core.scheduler.profile import check_against_sites, load_profile, parse_profile, schema

from .fakes import CPUPlugin, GPUPlugin
from .handmade import model_sites

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def reg(make_registry):
    return make_registry(gpu=GPUPlugin(), cpu=CPUPlugin())


def problems(reg, text):
    return parse_profile(text, "p.yaml", reg)[1]


@pytest.mark.parametrize("text, line, fragment", [
    ("default: gpu\nops:\n  sample: cpu\n  matmull: gpu\n", 4, "unknown op 'matmull' (did you mean 'matmul'?)"),
    ("rules:\n  - op: [matmul, atention]\n    backend: cpu\n", 2, "unknown op 'atention'"),
    ("default: gpu\nrules:\n  - name: ffn\n    backend: hipp\n", 4, "unknown backend 'hipp'"),
    ("rules:\n  - op: matmul\n    backend: [gpu, cuda]\n", 3, "unknown backend 'cuda'"),
    ("rules:\n  - format: Q9_K\n    backend: cpu\n", 2, "unknown format 'Q9_K'"),
    ("rules:\n  - op: matmul\n    backend: cpu\n  - name: 'ffn_(down'\n    backend: cpu\n", 4, "bad regex"),
    ("default: gpu\nrules:\n  - op: matmul\n    colour: red\n    backend: cpu\n", 4, "unknown key 'colour'"),
    ("default: gpu\ngpu_layerz: 3\n", 2, "unknown key 'gpu_layerz' (did you mean 'gpu_layers'?)"),
    ("rules:\n  - op: matmul\n", 2, "'backend' is a required property"),
    ("rules:\n  - layers: [5, 2]\n    backend: cpu\n", 2, "layer range [5, 2] is empty"),
    ("rules:\n  - phase: decoding\n    backend: cpu\n", 2, "'decoding' is not one of ['prefill', 'decode']"),
    ("default: gpu\ngpu_layers: 4\ngpu_memory: 2GiB\n", 3, "give only one"),
    ("default: gpu\ngpu_memory: lots\n", 2, "'lots' is not a size"),
    ("default: cpu\ngpu_layers: 2\ngpu_backend: cpu\n", 3, "is a host backend"),
    ("default: cpu\nops:\n  add: gpu\n  add: cpu\n", 4, "key 'add' repeats the one at line 3"),
    ("rules:\n  - op: matmul\n    backend: [cpu\n", 4, "not valid YAML"),
])
def test_invalid_profiles_fail_with_their_line(reg, text, line, fragment):
    found = [p for p in problems(reg, text) if p.severity == "error"]
    assert any(p.line == line and fragment in p.message for p in found), found


def test_load_profile_raises_with_file_and_line(reg, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("default: gpu\nrules:\n  - op: matmul\n    backend: nowhere\n")
    with pytest.raises(ProfileError, match=rf"{path}:4: error: unknown backend 'nowhere'"):
        load_profile(path, reg)


def test_all_errors_are_reported_at_once(reg):
    found = problems(reg, "default: gpuu\nops:\n  matmull: cpu\nrules:\n  - name: '('\n    backend: cpu\n")
    assert [p.line for p in found] == [1, 3, 5]


def test_valid_profile_reads_as_written(reg):
    prof, found = parse_profile("version: 1\ndefault: [gpu, cpu]\nops:\n  sample: cpu\nrules:\n"
                                "  - op: matmul\n    format: [q4_k, Q6_K]\n    layers: 3\n    phase: decode\n"
                                "    backend: cpu\n    why: slow on gpu\n", "p.yaml", reg)
    assert found == []
    assert prof.default.backends == ("gpu", "cpu") and prof.ops["sample"].backends == ("cpu",)
    rule = prof.rules[0]
    assert (rule.formats, rule.layers, rule.phase, rule.where, rule.why) == (
        frozenset({"Q4_K", "Q6_K"}), (3, 3), "decode", "p.yaml:6", "slow on gpu")


def test_statically_shadowed_rule_warns(reg):
    found = problems(reg, "rules:\n  - op: matmul\n    backend: cpu\n"
                          "  - op: matmul\n    layers: [0, 3]\n    backend: gpu\n"
                          "  - op: add\n    backend: gpu\n")
    assert [(p.severity, p.line) for p in found] == [("warning", 4)]
    assert "shadowed by the rule (op matmul) -> cpu at line 2" in found[0].message


def test_model_warnings_for_rules_matching_nothing_or_only_taken_sites(reg):
    prof, found = parse_profile("rules:\n  - name: ffn_down$\n    backend: cpu\n"
                                "  - op: matmul\n    layers: [0, 1]\n    name: down\n    backend: gpu\n"
                                "  - name: '^blk\\.9\\.'\n    backend: gpu\n"
                                "  - format: Q6_K\n    backend: gpu\n", "p.yaml", reg)
    assert found == []
    warnings = check_against_sites(prof, model_sites(4), "tiny")
    assert [(w.line, "shadowed" in w.message, "matches no call site" in w.message) for w in warnings] == [
        (4, True, False), (8, False, True)]


def cli(*argv):
    parser = argparse.ArgumentParser()
    profile_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_profile_check_cli(reg, tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("default: gpu\nops:\n  sample: cpu\n")
    assert cli("profile", "check", str(good)) == 0
    assert "valid (0 rules, 0 warnings)" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("default: gpu\nops:\n  sampler: cpu\n")
    assert cli("profile", "check", str(bad)) == 1
    assert f"{bad}:3: error: unknown op 'sampler'" in capsys.readouterr().out


def test_schema_knows_every_op():
    assert schema()["$defs"]["op"]["enum"] == list(ops.OP_NAMES)


def test_profile_reference_is_generated_from_the_schema():
    committed = (ROOT / "docs" / "PROFILE-REFERENCE.md").read_text()
    assert committed == reference_doc.render(), "regenerate: rocmforge profile reference > docs/PROFILE-REFERENCE.md"


@pytest.mark.parametrize("name", ["all-gpu.yaml", "gpu-cpu-sampler.yaml", "partial-offload.yaml"])
def test_example_profiles_are_valid(make_registry, name):
    # The examples name the real hip backend, which CI does not load: a fake stands in under that name.
    reg = make_registry(gpu=GPUPlugin(name="hip"), cpu=CPUPlugin())
    prof, found = parse_profile((ROOT / "docs" / "profiles" / name).read_text(), name, reg)
    assert prof is not None and not found, found


def test_profile_check_against_a_model(reg, tmp_path, capsys):
    from .tiny_model import write_tiny_llama
    model = write_tiny_llama(tmp_path / "tiny.gguf")
    path = tmp_path / "p.yaml"
    path.write_text("default: gpu\ngpu_layers: 9\nops:\n  dequant: cpu\nrules:\n  - name: ^blk\\.7\\.\n    backend: cpu\n"
                    "  - op: matmul\n    backend: gpu\n  - name: ffn_down\n    op: matmul\n    backend: cpu\n")
    assert cli("profile", "check", str(path), "--model", str(model)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{path}:2: warning: gpu_layers 9 exceeds the 4 layers of tiny.gguf: every layer is offloaded",
        f"{path}:4: warning: tiny.gguf has no dequant call site",
        f"{path}:6: warning: rule (name /^blk\\.7\\./) -> cpu matches no call site of tiny.gguf",
        f"{path}:10: warning: rule (op matmul, name /ffn_down/) -> cpu is shadowed by the rule (op matmul) -> gpu "
        "at line 8: it can never match",
        f"{path}: valid (3 rules, 4 warnings)"]


# -- hostile files ---------------------------------------------------------------------------------------------
LAUGHS = "\n".join(["l0: &l0 [cpu, cpu, cpu, cpu, cpu, cpu, cpu, cpu, cpu, cpu]"]
                   + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]
                   + ["rules:", "  - op: matmul", "    backend: *l8"]) + "\n"  # 10**9 values once expanded


@pytest.mark.parametrize("text, line, message", [
    ("default: &a [cpu, *a]\n", 1, "a YAML alias refers to a collection that contains it"),
    ("rules:\n  - &r\n    op: matmul\n    backend: cpu\n    why: *r\n", 2, "a YAML alias refers to a collection"),
    (LAUGHS, 4, "YAML aliases expand the profile to more than 10000 values"),
])
def test_self_referencing_and_exploding_aliases_are_refused_at_once(tmp_path, text, line, message):
    """Both hung `profile check` (and `run --profile`) before: the checks walked the alias graph as a tree."""
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    r = subprocess.run([sys.executable, "-c", "import sys; from rocmforge_core.cli import main; sys.exit(main())",
                        "profile", "check", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and f"{path}:{line}: error: {message}" in r.stdout, r.stdout + r.stderr


def test_aliases_that_share_a_value_are_fine(reg):
    prof, found = parse_profile("default: &both [gpu, cpu]\nops:\n  sample: *both\n", "p.yaml", reg)
    assert prof is not None and not found and prof.ops["sample"].backends == ("gpu", "cpu")


def test_deeply_nested_yaml_is_one_problem(reg):
    found = problems(reg, "default: " + "[" * 5000 + "]" * 5000 + "\n")
    assert [p.message for p in found] == ["the profile nests collections too deeply"]


def test_a_profile_that_is_not_utf8_is_one_sentence(reg, tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("default: cpu\n# café\n".encode("latin-1"))
    with pytest.raises(ProfileError, match=rf"^profile {path} is not UTF-8 text: byte 0xe9 at line 2 \(offset 18\)$"):
        load_profile(path, reg)
    with pytest.raises(ProfileError, match="is not UTF-8 text"):
        cli("profile", "check", str(path))
