"""``chatsvg cancel ID``: cancel a queued or running job; its credits come back once."""

from __future__ import annotations

from typing import Any

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


@click.command("cancel", context_settings=CONTEXT_SETTINGS)
@click.argument("job_id", metavar="ID")
@click.option("--reason", metavar="TEXT", help="Why, kept in the job's error message.")
@json_option
@store_options
def command(
    job_id: str,
    reason: str | None,
    as_json: bool,
    database_url: str | None,
    owner: str | None,
) -> int:
    """Cancel job ID of --owner: it ends failed with code 'cancelled', credits returned.

    A running job's worker is refused when it tries to write its result.
    Cancelling a cancelled job again changes nothing. Exit status 1 when
    there is no such job for this owner, or it already succeeded or failed.
    """
    settings = load_settings(database_url=database_url, owner=owner)
    return run(_cancel(settings, job_id, reason, as_json))


async def _cancel(settings: Any, job_id: str, reason: str | None, as_json: bool) -> int:
    from chatsvg_core.engine import Engine
    from chatsvg_core.generate import OfflineSketchProvider

    async with open_store(settings) as store:
        # Cancelling never calls the provider; any provider builds the engine.
        engine = Engine(store, None, OfflineSketchProvider())
        job = await engine.cancel(job_id, settings.owner, reason=reason)
    if as_json:
        echo_json(job.model_dump(mode="json"))
    else:
        click.echo(f"job {job.id} cancelled")
    return 0
