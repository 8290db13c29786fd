"""The Procrastinate adapter: announcements as Procrastinate jobs in the PostgreSQL of the ledger.

Procrastinate (https://procrastinate.readthedocs.io) keeps its jobs in
PostgreSQL tables and wakes workers with LISTEN/NOTIFY, so a host already
running the ledger on PostgreSQL needs no other service. Facts from its code
that shape this adapter:

* A worker runs ``concurrency`` jobs at once, and the default is 1: one
  10-120 s model call would hold the whole worker. It is set explicitly here
  (500).
* A job deferred with a ``queueing_lock`` is refused (``AlreadyEnqueued``)
  while another job with that lock is still waiting (``todo``). The lock is
  ``<queue>:<job id>``: repeated announcements of a waiting job collapse to
  one message, and a retry announced while the failing delivery runs
  (``doing``) is accepted. So the attempt is not needed in the lock.
* A delay is ``schedule_in``, kept by PostgreSQL as a timestamp: no broker
  visibility timeout to outrun, so no cap on it.
* Periodic tasks are deferred under a unique (task, periodic id, timestamp)
  key, so one run per tick whatever the number of workers; the
  ``recover()`` + ``sweep()`` passes are also safe to run at once. The
  maintenance task has a priority above the announcements and a queueing
  lock: with a backlog it is fetched next, not after every job queued
  before it, and ticks missed meanwhile collapse into one waiting run.
* Procrastinate's own stalled-job retry (``get_stalled_jobs`` +
  ``retry_job``) is not used: a worker that dies or is cut off leaves its
  Procrastinate job ``doing``, and the engine's lease recovery already
  announces the chatsvg job again (a new Procrastinate job: the queueing
  lock only holds ``todo`` ones). When a cut-off worker comes back, its
  late writes to the chatsvg tables are refused by the fencing token; its
  late finish of its own Procrastinate job only deletes that spent doorbell.
* On shutdown a worker waits ``shutdown_graceful_timeout`` for running jobs,
  then cancels them (the engine hands them back). A worker killed mid-job
  leaves its Procrastinate job ``doing``; nothing needs it any more (the
  engine recovers the chatsvg job when its lease lapses and announces it
  again).
* Finished Procrastinate jobs are deleted (``delete_jobs="always"``): they
  are doorbells, the job's history lives in the chatsvg tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import uuid4

from procrastinate import App, JobContext, RetryStrategy
from procrastinate.exceptions import AlreadyEnqueued, ConnectorException
from procrastinate.jobs import Job

from chatsvg_core.engine import Engine
from chatsvg_core.errors import TransientError

__all__ = [
    "ProcrastinateQueue",
    "procrastinate_app",
    "run_procrastinate_worker",
    "serve_procrastinate",
]

log = logging.getLogger("chatsvg_core.queue")

DEFAULT_QUEUE = "chatsvg"
PROCESS_TASK = "chatsvg.process"
MAINTAIN_TASK = "chatsvg.maintain"
MAINTAIN_PRIORITY = 100
_ENGINE = "chatsvg_engine"
_WORKER_ID = "chatsvg_worker_id"


class ProcrastinateQueue:
    """A :class:`~chatsvg_core.queues.JobQueue` on Procrastinate: ``enqueue`` defers a job.

    Args:
        app: a Procrastinate app made by :func:`procrastinate_app` (it knows
            the task), open (``async with app.open_async()``).
        queue_name: the Procrastinate queue workers listen to.
        batch: most announcements deferred in one statement.

    Announcements made at the same time (concurrent submits in one process)
    are deferred together, in one ``INSERT`` of up to ``batch`` jobs: while
    one statement runs, the next announcements wait and go in the next. A
    lone announcement goes at once, as one job. ``enqueue`` returns once its
    job is deferred (or refused by the queueing lock, or lost).

    An announcement that cannot reach PostgreSQL is logged and dropped, never
    raised: the chatsvg job is safe in the store and the next sweep
    announces it again.
    """

    def __init__(self, app: App, *, queue_name: str = DEFAULT_QUEUE, batch: int = 200) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.app = app
        self.queue_name = queue_name
        self.batch = batch
        self._pending: list[tuple[Job, str, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def lock(self, job_id: str) -> str:
        """The queueing lock of ``job_id``'s announcements."""
        return f"{self.queue_name}:{job_id}"

    async def enqueue(self, job_id: str, *, delay: float = 0.0, attempt: int = 0) -> None:
        """Defer the task for ``job_id`` by ``delay`` seconds (one waiting message per job)."""
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(f"delay must be a finite number of seconds >= 0, not {delay!r}")
        options: dict[str, Any] = {"queue": self.queue_name, "queueing_lock": self.lock(job_id)}
        if delay:
            options["schedule_in"] = {"seconds": delay}
        job = self.app.configure_task(PROCESS_TASK, **options).make_new_job(job_id=job_id)
        done = asyncio.get_running_loop().create_future()
        self._pending.append((job, job_id, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        """Defer what is pending, ``batch`` at a time, until nothing is."""
        taken: list[tuple[Job, str, asyncio.Future[None]]] = []
        try:
            while self._pending:
                taken, self._pending = self._pending[: self.batch], self._pending[self.batch :]
                # One job per queueing lock (the first): the others would be refused anyway.
                jobs: dict[str | None, Job] = {}
                for job, _, _ in taken:
                    jobs.setdefault(job.queueing_lock, job)
                try:
                    await self._defer(list(jobs.values()), [job_id for _, job_id, _ in taken])
                except Exception as exc:
                    for _, _, done in taken:
                        if not done.done():
                            done.set_exception(exc)
                else:
                    for _, _, done in taken:
                        if not done.done():
                            done.set_result(None)
        except asyncio.CancelledError:
            for _, _, done in taken + self._pending:
                done.cancel()
            self._pending = []
            raise

    async def _defer(self, jobs: list[Job], job_ids: list[str]) -> None:
        manager = self.app.job_manager
        try:
            try:
                await manager.batch_defer_jobs_async(jobs)
            except AlreadyEnqueued:
                if len(jobs) == 1:
                    return  # one announcement is already waiting
                # The statement is all or nothing: defer each on its own.
                for job in jobs:
                    with contextlib.suppress(AlreadyEnqueued):
                        await manager.defer_job_async(job)
        except (ConnectorException, OSError) as exc:
            for job_id in job_ids:
                log.warning(
                    "announcement of job %s lost (%s); the next sweep announces it again",
                    job_id,
                    exc,
                    extra={"job_id": job_id},
                )


def _every(seconds: int) -> str:
    """A Procrastinate cron (6 fields, seconds last) for "every ``seconds``"."""
    if 0 < seconds <= 60 and 60 % seconds == 0:
        return f"* * * * * */{seconds}" if seconds < 60 else "* * * * * 0"
    minutes, rest = divmod(seconds, 60)
    if rest == 0 and 0 < minutes <= 60 and 60 % minutes == 0:
        return f"*/{minutes} * * * * 0"
    raise ValueError("maintain_every must divide a minute (1-60 s) or an hour (whole minutes)")


def procrastinate_app(
    connector: Any,
    *,
    queue_name: str = DEFAULT_QUEUE,
    maintain_every: int | None = 30,
    store_retries: int = 10,
) -> App:
    """A Procrastinate app that knows the chatsvg tasks.

    ``connector`` is a Procrastinate connector, usually
    ``procrastinate.PsycopgConnector(conninfo=URL)`` on the ledger's
    database. Registered: ``chatsvg.process`` (one attempt of a job; a store
    that cannot be reached makes Procrastinate retry the message up to
    ``store_retries`` times with backoff, then the sweep takes over) and
    ``chatsvg.maintain`` (``recover()`` then ``sweep()``, every
    ``maintain_every`` seconds; ``None``: not scheduled). Apply Procrastinate's schema once with
    ``procrastinate schema --apply`` or ``app.schema_manager.apply_schema_async()``.
    """
    app = App(connector=connector)

    @app.task(
        name=PROCESS_TASK,
        queue=queue_name,
        pass_context=True,
        retry=RetryStrategy(
            max_attempts=store_retries,
            exponential_wait=2,
            retry_exceptions={TransientError},
        ),
    )
    async def process(context: JobContext, job_id: str) -> None:
        """One attempt of ``job_id`` through the engine of this worker."""
        extra = context.additional_context
        engine: Engine = extra[_ENGINE]
        await engine.process(job_id, extra[_WORKER_ID])

    async def maintain(context: JobContext, timestamp: int) -> None:
        """Recover expired leases and announce every QUEUED job again."""
        engine: Engine = context.additional_context[_ENGINE]
        await engine.recover()
        await engine.sweep()

    if maintain_every is not None:
        task = app.task(name=MAINTAIN_TASK, queue=queue_name, pass_context=True)(maintain)
        app.periodic(
            cron=_every(maintain_every),
            periodic_id=queue_name,
            # Fetched before the announcements (Procrastinate takes the highest
            # priority first, then the oldest): recovery must not wait behind a
            # backlog while the jobs of a dead or cut-off worker sit unclaimed.
            priority=MAINTAIN_PRIORITY,
            # At most one waiting run: ticks that pass while every slot is busy
            # collapse into it instead of piling up (AlreadyEnqueued is skipped).
            queueing_lock=f"{queue_name}:{MAINTAIN_TASK}",
        )(task)
    return app


async def serve_procrastinate(
    app: App,
    engine_factory: Callable[[ProcrastinateQueue], Awaitable[Engine]],
    *,
    queue_name: str = DEFAULT_QUEUE,
    concurrency: int = 500,
    shutdown_grace: float = 30.0,
    poll_interval: float = 0.5,
    listen_notify: bool = False,
    close_engine: bool = True,
    install_signal_handlers: bool = True,
    **worker_options: Any,
) -> None:
    """Run a Procrastinate worker for chatsvg jobs on this event loop until it is stopped.

    ``app`` comes from :func:`procrastinate_app` and must be open.
    ``engine_factory(queue)`` is awaited first and builds the engine (its
    queue is ``queue``, for retries and sweeps). Settings, each explicit:

    * ``concurrency`` (Procrastinate: 1): model calls one process runs at once.
    * ``shutdown_grace`` (Procrastinate: wait forever): seconds running jobs
      may finish on SIGTERM/SIGINT or cancellation; the rest are cancelled
      and handed back.
    * ``delete_jobs="always"``: finished Procrastinate jobs are deleted.
    * ``poll_interval`` (Procrastinate's ``fetch_job_polling_interval``: 5 s):
      an idle worker looks for new jobs this often; a busy one fetches the
      next job as soon as a slot is free.
    * ``listen_notify`` (Procrastinate: on): off by default. With it, every
      deferred job is a NOTIFY delivered to every worker, each of which
      wakes and runs a fetch, mostly empty: a cost per job that grows with
      the number of workers (at 4 workers it was about 3 ms of CPU per job,
      a third of a whole job's cost; ``benchmarks/README.md``). Polling
      costs ``1 / poll_interval`` fetches a second per idle worker instead,
      and delays a job's start by at most ``poll_interval`` on an idle
      worker, nothing against a 10-120 s model call. Turn it on for the
      lowest pickup latency when there are few workers.

    Extra keyword arguments go to ``App.run_worker_async``.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if not (math.isfinite(poll_interval) and poll_interval > 0):
        raise ValueError("poll_interval must be a positive number of seconds")
    engine = await engine_factory(ProcrastinateQueue(app, queue_name=queue_name))
    options: dict[str, Any] = {
        "queues": [queue_name],
        "concurrency": concurrency,
        "shutdown_graceful_timeout": shutdown_grace,
        "delete_jobs": "always",
        "listen_notify": listen_notify,
        "fetch_job_polling_interval": poll_interval,
        "install_signal_handlers": install_signal_handlers,
        "name": f"chatsvg-{socket.gethostname()}-{os.getpid()}",
        "additional_context": {
            _ENGINE: engine,
            _WORKER_ID: f"procrastinate:{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}",
        },
    }
    options.update(worker_options)
    try:
        await app.run_worker_async(**options)
    finally:
        if close_engine:
            await engine.store.aclose()
            aclose = getattr(engine.provider, "aclose", None)
            if aclose is not None:
                await aclose()


def run_procrastinate_worker(
    app: App,
    engine_factory: Callable[[ProcrastinateQueue], Awaitable[Engine]],
    **options: Any,
) -> None:
    """Open ``app`` and run :func:`serve_procrastinate` until SIGTERM/SIGINT (blocks)."""

    async def main() -> None:
        async with app.open_async():
            await serve_procrastinate(app, engine_factory, **options)

    asyncio.run(main())
