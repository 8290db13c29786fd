"""``chatsvg balance``: an owner's credits and latest ledger entries."""

from __future__ import annotations

import click

from chatsvg_core.cli import CONTEXT_SETTINGS
from chatsvg_core.cli._common import (
    json_option,
    load_settings,
    open_store,
    run,
    store_options,
)

__all__ = ["command"]


@click.command("balance", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--limit",
    type=click.IntRange(0, 10_000),
    default=10,
    show_default=True,
    help="Show this many latest ledger entries.",
)
@json_option
@store_options
def command(limit: int, as_json: bool, database_url: str | None, owner: str | None) -> int:
    """Show the credit balance of --owner and its latest ledger entries."""
    settings = load_settings(database_url=database_url, owner=owner)

    async def go() -> int:
        from chatsvg_core.ledger import Ledger

        async with open_store(settings) as store:
            # An owner without an account has 0 credits, as in the ledger and engine.
            statement = await Ledger(store).statement(settings.owner, limit=limit)
        if as_json:
            click.echo(statement.model_dump_json(indent=2))
            return 0
        click.echo(f"{settings.owner}: {statement.balance} credits")
        for e in statement.entries:
            click.echo(
                f"  {e.created_at:%Y-%m-%d %H:%M:%S}  {e.kind.value:<10} {e.amount:>+6}  "
                f"{e.ref or ''}"
            )
        return 0

    return run(go())
