"""``chatsvg worker``: serve the store's due jobs until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import Any

import click

from chatsvg_core.cli import CONTEXT_SETTINGS
from chatsvg_core.cli._common import (
    PROVIDERS,
    embedded,
    load_settings,
    open_store,
    provider_for,
    redact,
    run,
    store_options,
)

__all__ = ["command"]


@click.command("worker", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    help="Jobs run at once (default: the 'concurrency' setting, 2).",
)
@click.option(
    "--poll",
    type=click.FloatRange(0.05, 3600),
    default=2.0,
    show_default=True,
    help="Seconds between sweeps of the store for jobs other processes submitted.",
)
@click.option(
    "--provider",
    type=click.Choice(PROVIDERS),
    help="Which model: 'openai', 'offline' or 'auto' (openai when configured).",
)
@click.option("--once", is_flag=True, help="Run what is due now, then exit.")
@click.option("-q", "--quiet", is_flag=True, help="Print no job lifecycle lines.")
@store_options
def command(
    concurrency: int | None,
    poll: float,
    provider: str | None,
    once: bool,
    quiet: bool,
    database_url: str | None,
    owner: str | None,
) -> int:
    """Run queued jobs from the store on in-process asyncio workers.

    Recovers expired leases first, then serves due jobs. SIGINT/SIGTERM stop
    taking work and let running jobs finish (30 s grace); a job still running
    then is handed back to the queue.
    """
    settings = load_settings(
        database_url=database_url, owner=owner, provider=provider, concurrency=concurrency
    )
    return run(_worker(settings, poll=poll, once=once, quiet=quiet))


async def _worker(settings: Any, *, poll: float, once: bool, quiet: bool) -> int:
    from chatsvg_core.cli._generate import make_engine
    from chatsvg_core.cli._progress import Progress
    from chatsvg_core.queues import InProcessQueue

    queue = InProcessQueue(concurrency=settings.concurrency)
    progress = Progress(out=sys.stderr, quiet=quiet)
    chosen = provider_for(settings)
    name = getattr(chosen, "name", type(chosen).__name__)
    try:
        async with open_store(settings, writes=embedded(settings)) as store:
            engine = make_engine(settings, store, queue, chosen, progress)
            progress.line(
                f"chatsvg worker: {redact(settings.storage_url())} with {name}, "
                f"concurrency {settings.concurrency}"
            )

            async def handle(job_id: str) -> None:
                await engine.process(job_id, "cli-worker")

            await engine.recover()
            await engine.sweep()
            if once:
                await queue.serve(handle, until_idle=True)
                return 0
            stopping = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, stopping.set)

            async def sweep() -> None:
                # Other processes submit into the same store: look for due work.
                while not stopping.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stopping.wait(), poll)
                    await engine.recover()
                    await engine.sweep()

            server = asyncio.create_task(queue.serve(handle))
            poller = asyncio.create_task(sweep())
            await stopping.wait()
            progress.line("stopping: letting running jobs finish (30 s grace)")
            await queue.stop(grace=30)
            await asyncio.gather(server, poller)
            return 0
    finally:
        if hasattr(chosen, "aclose"):
            await chosen.aclose()
