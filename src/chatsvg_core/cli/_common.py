"""What the engine commands share: store options, settings, the store opening path, output.

Schema rule: ``chatsvg migrate`` is the only command that writes the schema
of a database the user named (``--database-url`` / ``CHATSVG_DATABASE_URL``
/ the config file). The one exception is the **embedded default** (the SQLite
file under ``home``, used when no URL is configured): the commands that write
data to it (``generate``, ``grant``, ``worker``) create and migrate it, so the
README's first command works on a fresh machine. Read commands never create
or migrate anything; on a missing or unmigrated database they say so and
point to ``chatsvg migrate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click

from chatsvg_core.errors import ConfigurationError, IncompatibleStorage

if TYPE_CHECKING:
    from chatsvg_core.cli._settings import CLISettings
    from chatsvg_core.generate import Provider
    from chatsvg_core.storage import Store

__all__ = [
    "PROVIDERS",
    "echo_json",
    "json_option",
    "load_settings",
    "open_store",
    "provider_for",
    "redact",
    "run",
    "store_options",
]

F = TypeVar("F", bound=Callable[..., Any])
PROVIDERS = ("auto", "offline", "openai")


def store_options(func: F) -> F:
    """``--database-url`` and ``--owner``, on every engine command."""
    func = click.option(
        "--owner",
        metavar="NAME",
        help="Account to act for (default: the 'owner' setting, else 'local').",
    )(func)
    func = click.option(
        "--database-url",
        metavar="URL",
        help="Storage URL, e.g. postgresql://app@db/app "
        "(default: CHATSVG_DATABASE_URL, else the embedded sqlite:///.chatsvg/chatsvg.db).",
    )(func)
    return func


def json_option(func: F) -> F:
    """``--json``: machine-readable output on stdout."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON on stdout instead of text."
    )(func)


def run(coro: Coroutine[Any, Any, int]) -> int:
    """Run a command's coroutine to completion."""
    return asyncio.run(coro)


def load_settings(**flags: Any) -> CLISettings:
    """Settings from flags over environment over config file; bad values are one-line errors."""
    try:
        from pydantic import ValidationError

        from chatsvg_core.cli._settings import CLISettings
    except ImportError as exc:  # pydantic-settings comes with the `cli` extra
        raise ConfigurationError(
            "the engine commands need the cli extra: pip install 'chatsvg-core[cli]'",
            missing=exc.name,
        ) from exc
    try:
        return CLISettings().with_flags(**flags)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigurationError(
            f"bad setting in the environment or config file: {problems}"
        ) from None
    except ValueError as exc:  # e.g. a config file that is not TOML
        raise ConfigurationError(f"cannot read the settings: {exc}") from None


def provider_for(settings: CLISettings, **openai_overrides: Any) -> Provider:
    """The provider the settings ask for (``auto``: OpenAI-compatible if configured).

    ``openai_overrides`` (flags such as ``--max-tokens``; ``None`` means not
    given) win over the ``CHATSVG_OPENAI_*`` environment.
    """
    import os

    from chatsvg_core.generate import (
        OfflineSketchProvider,
        OpenAICompatibleProvider,
        OpenAICompatibleSettings,
    )

    wants_openai = settings.provider == "openai" or (
        settings.provider == "auto"
        and any(os.environ.get(v) for v in ("CHATSVG_OPENAI_BASE_URL", "CHATSVG_OPENAI_API_KEY"))
    )
    if wants_openai:
        given = {k: v for k, v in openai_overrides.items() if v is not None}
        return OpenAICompatibleProvider(OpenAICompatibleSettings.from_env(**given))
    return OfflineSketchProvider()


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def embedded(settings: CLISettings) -> bool:
    """True when the store is the embedded default (no URL configured)."""
    return settings.database_url is None


def _precheck(settings: CLISettings, url: str, *, auto: bool) -> None:
    """Create the embedded home when allowed; refuse to create any other database file."""
    if embedded(settings):
        db = settings.home / "chatsvg.db"
        if auto:
            db.parent.mkdir(parents=True, exist_ok=True)
        elif not db.exists():
            raise ConfigurationError(
                f"no database yet at {db}: 'chatsvg generate' or 'chatsvg migrate' creates it",
                path=str(db),
            )
    elif url.startswith("sqlite:///") and not auto:
        # Opening a missing SQLite file would create it: a read must not.
        path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        if not path.exists():
            raise ConfigurationError(
                f"no database at {path}: 'chatsvg migrate --database-url {url}' creates it",
                path=str(path),
            )


@contextlib.asynccontextmanager
async def open_store(settings: CLISettings, *, writes: bool = False) -> AsyncIterator[Store]:
    """Open the configured store without ever migrating it, except as the module says."""
    from chatsvg_core.storage import open_storage

    url = settings.storage_url()
    auto = writes and embedded(settings)
    _precheck(settings, url, auto=auto)
    try:
        store = await open_storage(url, migrate=auto)
    except IncompatibleStorage as exc:
        version, latest = exc.fields.get("version"), exc.fields.get("latest")
        if isinstance(version, int) and isinstance(latest, int) and version < latest:
            flag = "" if embedded(settings) else " --database-url URL"
            raise IncompatibleStorage(
                f"the database at {redact(url)} is at schema version {version}, this "
                f"chatsvg needs {latest}: run 'chatsvg migrate{flag}' first",
                **exc.fields,
            ) from None
        raise
    try:
        yield store
    finally:
        await store.aclose()


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout."""
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def err(text: str) -> None:
    """A line on stderr."""
    click.echo(text, err=True)


def output_path(value: str | None) -> Path | None:
    """Check ``-o`` before any work is done (or charged): a file in an existing directory."""
    if value is None or value == "-":
        return None
    path = Path(value)
    if path.is_dir():
        raise click.BadParameter(f"{value} is a directory; give a file name", param_hint="'-o'")
    if not path.parent.is_dir():
        raise click.BadParameter(
            f"the directory {str(path.parent)!r} does not exist", param_hint="'-o'"
        )
    return path


def stdout_is_tty() -> bool:
    """Whether stdout is a terminal."""
    return sys.stdout.isatty()
