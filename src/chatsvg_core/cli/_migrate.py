"""``chatsvg migrate``: apply the schema; the only command that writes it."""

from __future__ import annotations

import click

from chatsvg_core.cli import CONTEXT_SETTINGS
from chatsvg_core.cli._common import echo_json, embedded, json_option, load_settings, redact, run

__all__ = ["command"]


@click.command("migrate", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--database-url",
    metavar="URL",
    help="Storage URL (default: CHATSVG_DATABASE_URL, else the embedded SQLite file).",
)
@click.option(
    "--check",
    is_flag=True,
    help="Change nothing: exit 1 when migrations are missing (for deploy checks).",
)
@json_option
def command(database_url: str | None, check: bool, as_json: bool) -> int:
    """Bring the database schema up to this version of chatsvg-core.

    Applies the missing numbered migrations in one transaction (safe to run
    from several deploy hosts at once: one applies them, the others find them
    done). Run it before starting workers or a service on a new version.
    """
    settings = load_settings(database_url=database_url)

    async def go() -> int:
        from chatsvg_core.errors import IncompatibleStorage
        from chatsvg_core.storage import open_storage

        url = settings.storage_url()
        if embedded(settings):
            if check and not (settings.home / "chatsvg.db").exists():
                click.echo(f"{settings.home / 'chatsvg.db'}: no database yet")
                return 1
            settings.home.mkdir(parents=True, exist_ok=True)
        before: int | None = None
        try:
            store = await open_storage(url, migrate=False)
        except IncompatibleStorage as exc:
            version = exc.fields.get("version")
            latest = exc.fields.get("latest")
            if not isinstance(version, int) or not isinstance(latest, int) or version > latest:
                raise
            before = version
            if check:
                _report(as_json, url, before, latest, applied=False)
                return 1
            store = await open_storage(url, migrate=True)
        try:
            after = await _version(store)
        finally:
            await store.aclose()
        if before is None:
            before = after
        _report(as_json, url, before, after, applied=not check)
        return 0

    return run(go())


async def _version(store: object) -> int:
    get = getattr(store, "schema_version", None)
    return int(await get()) if get is not None else 0


def _report(as_json: bool, url: str, before: int, after: int, *, applied: bool) -> None:
    shown = redact(url)
    if as_json:
        echo_json({"url": shown, "from": before, "to": after, "up_to_date": before == after})
    elif before == after:
        click.echo(f"{shown}: schema up to date (version {after})")
    elif applied:
        click.echo(f"{shown}: migrated from version {before} to {after}")
    else:
        click.echo(f"{shown}: at version {before}, this chatsvg needs {after}: run chatsvg migrate")
