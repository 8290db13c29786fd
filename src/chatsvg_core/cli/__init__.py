"""The ``chatsvg`` command line: a small registry of subcommands.

Each subcommand lives in its own private module that exposes
``register(subparsers)``; it adds its parser and sets ``handler`` (a function
``(argparse.Namespace) -> int``) as a default. To add a command, write
``cli/_<name>.py`` and add one line to :data:`COMMANDS`. Modules are imported
only when the command line is built, so optional extras (rich) load lazily.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Protocol

__all__ = ["COMMANDS", "build_parser", "main"]

# name -> module path; each module defines ``register(subparsers)``.
COMMANDS: dict[str, str] = {
    "sanitize": "chatsvg_core.cli._sanitize",
}

Handler = Callable[[argparse.Namespace], int]


class _CommandModule(Protocol):
    def register(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        """Add the command's parser and set its ``handler`` default."""


def build_parser() -> argparse.ArgumentParser:
    """The full ``chatsvg`` argument parser, with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="chatsvg", description="chatsvg-core command line tools.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMANDS.values():
        module: _CommandModule = importlib.import_module(module_name)
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``chatsvg``; returns the exit status (0 success, 1 failure, 2 usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:  # argparse exits on --help and usage errors
        return int(exc.code) if isinstance(exc.code, int) else 2
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
