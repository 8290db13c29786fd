"""``chatsvg jobs``: recent jobs of an owner (or of everyone)."""

from __future__ import annotations

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
from chatsvg_core.jobs import JobStatus

__all__ = ["command"]


@click.command("jobs", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--status", type=click.Choice([s.value for s in JobStatus]), help="Only jobs in this state."
)
@click.option("--all-owners", is_flag=True, help="Jobs of every owner, not only --owner's.")
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=20,
    show_default=True,
    help="At most this many jobs, newest first.",
)
@json_option
@store_options
def command(
    status: str | None,
    all_owners: bool,
    limit: int,
    as_json: bool,
    database_url: str | None,
    owner: str | None,
) -> int:
    """List recent jobs, newest first: id, state, attempts, age, prompt, last error."""
    settings = load_settings(database_url=database_url, owner=owner)

    async def go() -> int:
        async with open_store(settings) as store, store.transaction() as tx:
            jobs = await tx.list_jobs(
                owner=None if all_owners else settings.owner,
                status=JobStatus(status) if status else None,
                limit=limit,
            )
        if as_json:
            echo_json([j.model_dump(mode="json") for j in jobs])
            return 0
        for j in jobs:
            prompt = str(j.request.get("prompt", ""))[:40]
            error = f"  {j.last_error.code}" if j.last_error else ""
            click.echo(
                f"{j.id}  {j.status.value:<9}  attempt {j.attempt}/{j.max_attempts}  "
                f"{j.created_at:%Y-%m-%d %H:%M}  {prompt!r}{error}"
            )
        if not jobs:
            click.echo("no jobs")
        return 0

    return run(go())
