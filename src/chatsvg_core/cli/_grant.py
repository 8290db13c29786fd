"""``chatsvg grant AMOUNT``: give credits to an owner, once per external id."""

from __future__ import annotations

from uuid import uuid4

import click

from chatsvg_core.cli import CONTEXT_SETTINGS
from chatsvg_core.cli._common import (
    echo_json,
    json_option,
    load_settings,
    open_store,
    run,
    store_options,
)

__all__ = ["command"]


@click.command("grant", context_settings=CONTEXT_SETTINGS)
@click.argument("amount", type=click.IntRange(1, 10**9))
@click.option(
    "--external-id",
    metavar="ID",
    help="A payment or order id: a repeat with the same id grants nothing.",
)
@click.option("--memo", metavar="TEXT", help="A note stored with the ledger entry.")
@json_option
@store_options
def command(
    amount: int,
    external_id: str | None,
    memo: str | None,
    as_json: bool,
    database_url: str | None,
    owner: str | None,
) -> int:
    """Give AMOUNT credits to --owner.

    With --external-id the grant is idempotent: repeating it grants nothing
    and says so (exit status 0, since the credits are there).
    """
    settings = load_settings(database_url=database_url, owner=owner)

    async def go() -> int:
        from chatsvg_core.ledger import Ledger

        new_id = uuid4().hex
        async with open_store(settings, writes=True) as store:
            ledger = Ledger(store, new_id=lambda: new_id)
            entry = await ledger.grant(settings.owner, amount, external_id=external_id, memo=memo)
            balance = await ledger.balance(settings.owner)
        granted = entry.id == new_id  # else the external id had already been granted
        if as_json:
            echo_json(
                {
                    "granted": granted,
                    "entry": entry.model_dump(mode="json"),
                    "balance": balance,
                }
            )
        elif granted:
            click.echo(
                f"granted {entry.amount} to {settings.owner} (entry {entry.id}); balance {balance}"
            )
        else:
            click.echo(
                f"nothing granted: {external_id!r} was already granted "
                f"({entry.amount} credits, entry {entry.id}, "
                f"{entry.created_at:%Y-%m-%d %H:%M:%S} UTC); balance {balance}"
            )
        return 0

    return run(go())
