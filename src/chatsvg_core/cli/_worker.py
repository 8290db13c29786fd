"""``chatsvg worker``: serve the store's due jobs until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from datetime import timedelta
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


QUEUES = ("inprocess", "db", "celery", "arq", "procrastinate")


@click.command("worker", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--queue",
    "queue_kind",
    type=click.Choice(QUEUES),
    default="inprocess",
    show_default=True,
    help="Where jobs come from: the in-process queue fed by store sweeps, the database "
    "itself (process_next), or a queue engine (celery, arq, procrastinate).",
)
@click.option(
    "--broker",
    envvar="CHATSVG_BROKER_URL",
    help="Broker URL for --queue celery (redis:// or amqp://) or arq (redis://); "
    "env CHATSVG_BROKER_URL.",
)
@click.option(
    "--pool",
    type=click.Choice(["gevent", "threads", "prefork", "solo"]),
    default="gevent",
    show_default=True,
    help="Celery pool (gevent holds many model calls per process; see docs/celery.md).",
)
@click.option(
    "--beat/--no-beat",
    default=False,
    help="Celery: also run recovery and the sweep every --poll s in this worker "
    "(instead of a beat process); several are harmless.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 5000),
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
    queue_kind: str,
    broker: str | None,
    pool: str,
    beat: bool,
    concurrency: int | None,
    poll: float,
    provider: str | None,
    once: bool,
    quiet: bool,
    database_url: str | None,
    owner: str | None,
) -> int:
    """Run queued jobs from the store, on in-process asyncio workers or a queue engine.

    Recovers expired leases first, then serves due jobs. SIGINT/SIGTERM stop
    taking work and let running jobs finish (30 s grace); a job still running
    then is handed back to the queue. With ``--queue celery|arq|procrastinate``
    this process becomes that engine's worker for the configured store.
    """
    settings = load_settings(
        database_url=database_url, owner=owner, provider=provider, concurrency=concurrency
    )
    if queue_kind == "inprocess":
        return run(_worker(settings, poll=poll, once=once, quiet=quiet))
    if queue_kind == "db":
        return run(_db_worker(settings, poll=poll, once=once, quiet=quiet))
    if once:
        raise click.UsageError(f"--once works with --queue inprocess or db, not {queue_kind}")
    return _engine_worker(queue_kind, settings, broker=broker, pool=pool, beat=beat, poll=poll)


def _engine_options(settings: Any) -> dict[str, Any]:
    return {"daily_cap": settings.daily_cap, "lease": timedelta(seconds=settings.lease_seconds)}


def _need(kind: str, broker: str | None) -> str:
    if not broker:
        raise click.UsageError(f"--queue {kind} needs --broker URL (or CHATSVG_BROKER_URL)")
    return broker


def _engine_worker(
    kind: str, settings: Any, *, broker: str | None, pool: str, beat: bool, poll: float
) -> int:
    """Become a Celery, arq or Procrastinate worker (blocks until SIGTERM/SIGINT)."""
    from chatsvg_core.errors import ConfigurationError

    url = settings.storage_url()
    concurrency = settings.concurrency

    def provider() -> Any:
        return provider_for(settings)

    async def build(queue: Any) -> Any:
        from chatsvg_core.engine import Engine
        from chatsvg_core.storage import open_storage

        # Only `chatsvg migrate` writes a named database's schema (see cli/_common.py).
        store = await open_storage(url, migrate=embedded(settings))
        return Engine(store, queue, provider(), **_engine_options(settings))

    print(
        f"chatsvg worker: {redact(url)} through {kind}, concurrency {concurrency}",
        file=sys.stderr,
    )
    if kind == "celery":
        try:
            from celery import Celery
        except ImportError as exc:
            raise ConfigurationError(
                "--queue celery needs the celery extra: pip install 'chatsvg-core[celery]'"
            ) from exc
        from celery import signals

        from chatsvg_core.queues import setup_celery

        app = Celery("chatsvg", broker=_need(kind, broker))
        workers = setup_celery(
            app, url, provider=provider, sweep_every=poll, **_engine_options(settings)
        )
        stop = threading.Event()
        if beat:
            # Celery's -B does not run under gevent: a thread does the beat's two passes.
            def start(**_: Any) -> None:
                workers.maintain(poll, stop)

            signals.worker_ready.connect(start, weak=False)
        try:
            app.worker_main(["worker", "-P", pool, "-c", str(concurrency), "-l", "INFO"])
        finally:
            stop.set()
        return 0
    if kind == "arq":
        from chatsvg_core.queues import arq_worker_settings, run_arq_worker

        run_arq_worker(
            arq_worker_settings(build, redis_url=_need(kind, broker), max_jobs=concurrency)
        )
        return 0
    try:
        from procrastinate import PsycopgConnector
    except ImportError as exc:
        raise ConfigurationError(
            "--queue procrastinate needs the procrastinate extra: "
            "pip install 'chatsvg-core[procrastinate]'"
        ) from exc
    from chatsvg_core.queues import procrastinate_app, run_procrastinate_worker

    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigurationError("--queue procrastinate runs on PostgreSQL: a postgresql:// store")
    app_ = procrastinate_app(PsycopgConnector(conninfo=url.split("?", 1)[0]))
    run_procrastinate_worker(app_, build, concurrency=concurrency)
    return 0


async def _db_worker(settings: Any, *, poll: float, once: bool, quiet: bool) -> int:
    """``concurrency`` loops of ``process_next``: the database is the queue."""
    from chatsvg_core.cli._generate import make_engine
    from chatsvg_core.cli._progress import Progress

    progress = Progress(out=sys.stderr, quiet=quiet)
    chosen = provider_for(settings)
    try:
        async with open_store(settings, writes=embedded(settings)) as store:
            engine = make_engine(settings, store, None, chosen, progress)
            progress.line(
                f"chatsvg worker: {redact(settings.storage_url())} as the queue, "
                f"concurrency {settings.concurrency}"
            )
            stopping = asyncio.Event()
            if not once:
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                        loop.add_signal_handler(sig, stopping.set)
            await engine.recover()

            async def take(n: int) -> None:
                # Each loop finishes the job it holds before it looks at ``stopping``.
                while not stopping.is_set():
                    if await engine.process_next(f"cli-db-{os.getpid()}-{n}") is None:
                        if once:
                            return
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stopping.wait(), poll)

            async def maintain() -> None:
                while not stopping.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stopping.wait(), poll)
                    await engine.recover()

            takers = [asyncio.create_task(take(n)) for n in range(settings.concurrency)]
            keeper = None if once else asyncio.create_task(maintain())
            await asyncio.gather(*takers)
            stopping.set()
            if keeper is not None:
                await keeper
            return 0
    finally:
        if hasattr(chosen, "aclose"):
            await chosen.aclose()


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
