"""``chatsvg job ID``: one job, its charge and refund, and (``-o``) its SVG."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from chatsvg_core.cli import CONTEXT_SETTINGS
from chatsvg_core.cli._common import (
    echo_json,
    json_option,
    load_settings,
    open_store,
    output_path,
    run,
    store_options,
)
from chatsvg_core.errors import JobNotFound

__all__ = ["command"]


@click.command("job", context_settings=CONTEXT_SETTINGS)
@click.argument("job_id", metavar="ID")
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    help="Write the job's sanitized SVG here ('-' for stdout) when it succeeded.",
)
@json_option
@store_options
def command(
    job_id: str,
    output: str | None,
    as_json: bool,
    database_url: str | None,
    owner: str | None,
) -> int:
    """Show job ID: state, attempts, timing, error, credits charged and refunded.

    Exit status 1 when there is no such job (or -o was given and it has no
    result yet). Jobs of every owner are shown: the id is the capability.
    """
    target = output_path(output)
    settings = load_settings(database_url=database_url, owner=owner)
    return run(_show(settings, job_id, output, target, as_json))


async def _show(
    settings: Any, job_id: str, output: str | None, target: Path | None, as_json: bool
) -> int:
    from chatsvg_core.storage import EntryKind

    async with open_store(settings) as store, store.transaction() as tx:
        job = await tx.get_job(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}", job_id=job_id)
        # Charged at claim, or reserved at submit (charge_at="submit").
        charge = await tx.find_entry(EntryKind.CHARGE, job.id) or await tx.find_entry(
            EntryKind.RESERVE, job.id
        )
        refund = await tx.find_entry(EntryKind.REFUND, job.id) or await tx.find_entry(
            EntryKind.RELEASE, job.id
        )
        result = await tx.get_result(job.id) if output is not None else None
    credits = {
        "charged": abs(charge.amount) if charge else 0,
        "refunded": abs(refund.amount) if refund else 0,
    }
    if output is not None:
        if result is None:
            click.echo(f"chatsvg: job {job.id} is {job.status.value}: no SVG yet", err=True)
            return 1
        if target is None:
            click.echo(result.svg)
        else:
            await asyncio.to_thread(target.write_text, result.svg, encoding="utf-8")
    if as_json:
        echo_json({**job.model_dump(mode="json"), "credits": credits})
        return 0
    if output == "-":
        return 0  # stdout carries the SVG
    lines = [
        f"job       {job.id}",
        f"owner     {job.owner}",
        f"status    {job.status.value}",
        f"attempt   {job.attempt} of {job.max_attempts}",
        f"prompt    {job.request.get('prompt', '')!r}",
        f"created   {job.created_at:%Y-%m-%d %H:%M:%S} UTC",
        f"updated   {job.updated_at:%Y-%m-%d %H:%M:%S} UTC",
    ]
    if job.status.value == "queued":
        lines.append(f"due       {job.run_at:%Y-%m-%d %H:%M:%S} UTC")
    if job.worker_id and job.status.value == "running":
        lines.append(f"worker    {job.worker_id} (lease until {job.lease_expires_at:%H:%M:%S})")
    if job.last_error is not None:
        lines.append(f"error     {job.last_error.code}: {job.last_error.message}")
    lines.append(f"credits   {credits['charged']} charged, {credits['refunded']} refunded")
    if target is not None:
        lines.append(f"wrote     {target}")
    for line in lines:
        click.echo(line)
    return 0
