"""The ``rocmforge`` command line. Each subcommand is one module here exposing ``add_parser(subparsers)``, which
registers its arguments and sets ``func=run``. Errors print one sentence to stderr and exit 1; ``--debug`` (before
or after the command) shows the traceback. ``python -m rocmforge`` runs the same ``main``."""

from __future__ import annotations

import argparse
import importlib
import sys

from rocmforge_core import __version__
from rocmforge_core.errors import RocmforgeError
from rocmforge_core.registry import get_registry

COMMANDS = ("plugins", "run", "tokenize", "logits", "bench", "explain", "profile", "tune", "serve", "serve_ray",
            "warmup")
WARN_OF_FAILED_PLUGINS = ("run", "serve", "serve-ray", "bench", "warmup")  # a plugin that did not load may be why these run slow or fail


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rocmforge", description="Inference for GGUF language models.")
    parser.add_argument("--version", action="version", version=f"rocmforge {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"rocmforge_core.cli.{name}").add_parser(sub)
    for command in {id(p): p for p in sub.choices.values()}.values():
        _add_debug(command)
    return parser


def _add_debug(parser: argparse.ArgumentParser) -> None:
    """--debug after the command too (as `rocmforge run ... --debug`): SUPPRESS keeps a command that was not given
    it from resetting the value given before the command."""
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
    for action in parser._actions:  # nested commands (profile check)
        if isinstance(action, argparse._SubParsersAction):
            for child in {id(p): p for p in action.choices.values()}.values():
                _add_debug(child)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in WARN_OF_FAILED_PLUGINS:
            for record in get_registry().failed():
                print(f"rocmforge: warning: plugin {record.name} failed to load: {record.error}", file=sys.stderr)
        return int(args.func(args) or 0)
    except RocmforgeError as exc:
        if args.debug:
            raise
        print(f"rocmforge: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rocmforge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
