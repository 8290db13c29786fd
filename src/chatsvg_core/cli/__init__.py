"""The ``chatsvg`` command line, built on click.

One private module per command (``cli/_<name>.py``) defines a click command
named ``command``; :data:`COMMANDS` maps each command name to its module, which
is imported only when that command runs (or when ``--help`` lists them), so
``chatsvg sanitize`` never loads the engine and optional extras load lazily.
To add a command, write ``cli/_<name>.py`` and add one line to :data:`COMMANDS`;
shared options and the store opening path live in ``cli/_common.py``.

:func:`main` is the only place that turns exceptions into exit statuses: 0
success, 1 a failure the user can act on (the error code and one line), 2 a
usage error (one line naming the command and its ``--help``), 130 Ctrl-C. No
user mistake shows a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

__all__ = ["COMMANDS", "cli", "main"]

COMMANDS: dict[str, str] = {
    "balance": "chatsvg_core.cli._balance",
    "cancel": "chatsvg_core.cli._cancel",
    "generate": "chatsvg_core.cli._generate",
    "grant": "chatsvg_core.cli._grant",
    "job": "chatsvg_core.cli._job",
    "jobs": "chatsvg_core.cli._jobs",
    "migrate": "chatsvg_core.cli._migrate",
    "sanitize": "chatsvg_core.cli._sanitize",
    "worker": "chatsvg_core.cli._worker",
}
"""Command name -> module defining ``command`` (a :class:`click.Command`)."""

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _LazyGroup(click.Group):
    """A group whose commands are imported from :data:`COMMANDS` on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        command: click.Command = importlib.import_module(module).command
        return command


@click.group(cls=_LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="chatsvg-core", prog_name="chatsvg")
def cli() -> None:
    """chatsvg-core: generate, sanitize and account for SVG drawings.

    The engine commands run on the embedded default (a SQLite file in
    ./.chatsvg and an in-process worker) unless --database-url or
    CHATSVG_DATABASE_URL names another store. Run 'chatsvg COMMAND --help'
    for each command's options.
    """


def _one_line(text: str) -> str:
    # A message may quote user input (a file name, an option value) with line
    # breaks in it; an error is always one line on the terminal.
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _say(text: str) -> None:
    click.echo(_one_line(text), err=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``chatsvg``; return the exit status (0 ok, 1 failure, 2 usage error, 130 Ctrl-C)."""
    from chatsvg_core.errors import ChatSVGError

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = cli.main(args=args, prog_name="chatsvg", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        # ``chatsvg`` alone: the help is the answer, but it is still a usage error.
        click.echo(exc.ctx.get_help() if exc.ctx else "", err=True)
        return 2
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "chatsvg"
        _say(f"{where}: error: {exc.format_message()} (see '{where} --help')")
        return 2
    except click.ClickException as exc:  # e.g. a file that cannot be opened
        _say(f"chatsvg: error: {exc.format_message()}")
        return exc.exit_code
    except click.exceptions.Abort:
        _say("chatsvg: interrupted")
        return 130
    except KeyboardInterrupt:
        _say("chatsvg: interrupted")
        return 130
    except ChatSVGError as exc:
        _say(f"chatsvg: {exc.code}: {exc.message}")
        return 1
    except OSError as exc:  # a file or directory the user named
        _say(f"chatsvg: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        return 1
    except Exception as exc:
        # A bug, not a user mistake: still one line, with a way to see more.
        if os.environ.get("CHATSVG_DEBUG"):
            raise
        _say(
            f"chatsvg: internal error: {type(exc).__name__}: {exc} "
            "(set CHATSVG_DEBUG=1 to see the traceback, and please report it)"
        )
        return 1
    return result if isinstance(result, int) else 0
