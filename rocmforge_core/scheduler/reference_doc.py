"""docs/PROFILE-REFERENCE.md, rendered from profile_schema.json (``rocmforge profile reference`` prints it; a test
fails when the committed file differs, so the schema and its documentation cannot drift apart)."""

from __future__ import annotations

from rocmforge_core.scheduler.profile import schema

HEADER = """# Profile reference

<!-- Generated from rocmforge_core/scheduler/profile_schema.json by `rocmforge profile reference`; do not edit. -->

A profile is a YAML file that says which backend runs which op call site of a model. Check one with
`rocmforge profile check FILE [--model FILE]`, use it with `--profile FILE` (run, explain, serve), and read why
each site landed where it did with `rocmforge explain`. Schema: `rocmforge profile schema`. Examples:
[docs/profiles/](profiles/). How placement works: [SCHEDULER.md](SCHEDULER.md).
"""


def render() -> str:
    s = schema()
    defs = s["$defs"]
    out = [HEADER, s["description"], "", "## Top-level keys", "", "| key | type | meaning |", "|---|---|---|"]
    for key, prop in s["properties"].items():
        out.append(f"| `{key}` | {_type(prop, defs)} | {_desc(prop, defs)} |")
    out += ["", "`gpu_layers` and `gpu_memory` exclude each other.", "", "## Rules", "",
            defs["rule"].get("description", s["properties"]["rules"]["description"]), "",
            "| key | type | meaning |", "|---|---|---|"]
    for key, prop in defs["rule"]["properties"].items():
        required = " (required)" if key in defs["rule"].get("required", ()) else ""
        out.append(f"| `{key}`{required} | {_type(prop, defs)} | {_desc(prop, defs)} |")
    out += ["", "## Values", ""]
    for name in ("backend", "backends", "op", "format", "bytes"):
        d = defs[name]
        extra = f" One of: {', '.join(f'`{v}`' for v in d['enum'])}." if "enum" in d else ""
        out.append(f"- **{name}**: {d['description']}{extra}")
    return "\n".join(out) + "\n"


def _resolve(prop: dict, defs: dict) -> dict:
    ref = prop.get("$ref", "")
    return defs[ref.rsplit("/", 1)[1]] if ref else prop


def _type(prop: dict, defs: dict) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[1]
    if "const" in prop:
        return f"`{prop['const']}`"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "oneOf" in prop:
        return " or ".join(_type(p, defs) for p in prop["oneOf"])
    if prop.get("type") == "array":
        items = prop.get("items", {})
        n = prop.get("minItems") if prop.get("minItems") == prop.get("maxItems") else None
        return f"list of {f'{n} ' if n else ''}{_type(items, defs)}"
    if prop.get("type") == "object":
        return "map"
    kind = prop.get("type", "")
    return f"{kind} >= {prop['minimum']}" if "minimum" in prop else kind


def _desc(prop: dict, defs: dict) -> str:
    return (prop.get("description") or _resolve(prop, defs).get("description", "")).replace("|", "\\|")
