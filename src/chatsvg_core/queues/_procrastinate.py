"""The Procrastinate adapter: announcements as Procrastinate jobs in the PostgreSQL of the ledger.

Procrastinate (https://procrastinate.readthedocs.io) keeps its jobs in
PostgreSQL tables and wakes workers with LISTEN/NOTIFY, so a host already
running the ledger on PostgreSQL needs no other service. Facts from its code
that shape this adapter:

* Each Procrastinate job (a "message" here) costs a worker Procrastinate's
  fetch and finish, two transactions through plpgsql functions and event
  triggers: about as much CPU as a whole job's engine work. So a message
  announces every job that was announced at once in the submitting process
  (up to ``per_message``), not one each: the store is the source of truth
  and the claim is atomic, so a message is only a doorbell for the ids it
  names, and naming several is as safe as naming one.
* A worker runs ``concurrency`` messages at once, and the default is 1. Here
  a message only starts its jobs and is finished; the jobs run on apart,
  at most ``concurrency`` (500) model calls per process, and Procrastinate
  runs :data:`FETCH_SLOTS` messages at once. A message that finds every
  slot taken waits ``hold`` seconds, then announces its jobs again (another
  worker may be idle); a full worker holds at most ``FETCH_SLOTS`` messages,
  so it stops fetching instead of hoarding them.
* A job deferred with a ``queueing_lock`` is refused (``AlreadyEnqueued``)
  while another job with that lock is still waiting (``todo``). A lone or
  delayed announcement is a message under the lock ``<queue>:<job id>``:
  repeated announcements of a waiting job (the sweep's) collapse to one
  message. A message of several jobs has no lock (a lock names one job);
  a job announced twice is a duplicate delivery, which the claim refuses.
* A delay is ``schedule_in``, kept by PostgreSQL as a timestamp: no broker
  visibility timeout to outrun, so no cap on it.
* Periodic tasks are deferred under a unique (task, periodic id, timestamp)
  key, so one run per tick whatever the number of workers; the
  ``recover()`` + ``sweep()`` passes are also safe to run at once. The
  maintenance task has a priority above the announcements and a queueing
  lock: with a backlog it is fetched next, not after every job queued
  before it, and ticks missed meanwhile collapse into one waiting run.
* Procrastinate's own stalled-job retry (``get_stalled_jobs`` +
  ``retry_job``) is not used: a worker that dies or is cut off may leave a
  message ``doing``. Its jobs that had started are RUNNING with a lease,
  which the engine's recovery takes back and announces again; those that
  had not are QUEUED, which the sweep announces again. When a cut-off
  worker comes back, its late writes to the chatsvg tables are refused by
  the fencing token; its late finish of a message only deletes that spent
  doorbell.
* On shutdown (SIGTERM/SIGINT, or the serving task cancelled) the adapter
  stops Procrastinate's worker (it stops fetching; messages waiting for a
  slot announce their jobs again) and gives the running jobs
  ``shutdown_grace`` seconds, then cancels them (the engine hands them
  back). The adapter handles the signals itself: Procrastinate's own
  handler would stop only its messages, not the jobs they started.
* Finished Procrastinate jobs are deleted (``delete_jobs="always"``): they
  are doorbells, the job's history lives in the chatsvg tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from procrastinate import App, JobContext
from procrastinate.exceptions import AlreadyEnqueued, ConnectorException
from procrastinate.jobs import Job

from chatsvg_core.engine import Engine
from chatsvg_core.errors import TransientError

if TYPE_CHECKING:
    from procrastinate.types import JSONValue

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
_RUNNER = "chatsvg_runner"
# Messages a worker runs at once. A message only starts its jobs (the model calls run
# apart from it, up to ``concurrency``), so a few are enough; a full worker then stops
# fetching instead of hoarding messages that idle workers could take.
FETCH_SLOTS = 4


class ProcrastinateQueue:
    """A :class:`~chatsvg_core.queues.JobQueue` on Procrastinate: ``enqueue`` defers a message.

    Args:
        app: a Procrastinate app made by :func:`procrastinate_app` (it knows
            the task), open (``async with app.open_async()``).
        queue_name: the Procrastinate queue workers listen to.
        batch: most messages deferred in one statement.
        per_message: most jobs one message announces.

    Announcements made at the same time (concurrent submits in one process)
    are deferred together: while one ``INSERT`` runs, the next announcements
    wait, and then the due ones go in as messages of up to ``per_message``
    job ids each, so Procrastinate fetches and finishes one message for
    several jobs (its fetch and finish cost about as much as a whole job's
    engine work; ``benchmarks/README.md``). A lone announcement goes at once,
    as one message for one job under the queueing lock ``<queue>:<job id>``,
    and so does every delayed one (``schedule_in``). ``enqueue`` returns once
    its message is deferred (or refused by the queueing lock, or lost).

    An announcement that cannot reach PostgreSQL is logged and dropped, never
    raised: the chatsvg job is safe in the store and the next sweep
    announces it again.
    """

    def __init__(
        self,
        app: App,
        *,
        queue_name: str = DEFAULT_QUEUE,
        batch: int = 200,
        per_message: int = 50,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        if per_message < 1:
            raise ValueError("per_message must be at least 1")
        self.app = app
        self.queue_name = queue_name
        self.batch = batch
        self.per_message = per_message
        self._pending: list[tuple[str, float, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def lock(self, job_id: str) -> str:
        """The queueing lock of ``job_id``'s own messages (lone and delayed announcements)."""
        return f"{self.queue_name}:{job_id}"

    async def enqueue(self, job_id: str, *, delay: float = 0.0, attempt: int = 0) -> None:
        """Announce ``job_id``, due in ``delay`` seconds."""
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(f"delay must be a finite number of seconds >= 0, not {delay!r}")
        done = asyncio.get_running_loop().create_future()
        self._pending.append((job_id, delay, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await done

    def _messages(self, taken: list[tuple[str, float, asyncio.Future[None]]]) -> list[Job]:
        """The Procrastinate jobs for ``taken``: due announcements together, the rest alone.

        A job announced both due and delayed gets only the due message: a
        delivery before its ``run_at`` announces it again for then.
        """
        due = list(dict.fromkeys(job_id for job_id, delay, _ in taken if not delay))
        alone: dict[str, float] = {}
        for job_id, delay, _ in taken:
            if delay and job_id not in due:
                alone.setdefault(job_id, delay)  # the first (one per queueing lock)
        jobs: list[Job] = []
        if len(due) == 1:
            alone = {due[0]: 0.0, **alone}
        elif due:
            # No queueing lock on a message of several jobs (a lock names one job);
            # a job announced twice is a duplicate delivery, which the claim refuses.
            deferrer = self.app.configure_task(PROCESS_TASK, queue=self.queue_name)
            for i in range(0, len(due), self.per_message):
                chunk: list[JSONValue] = list(due[i : i + self.per_message])
                jobs.append(deferrer.make_new_job(job_ids=chunk))
        for job_id, delay in alone.items():
            options: dict[str, Any] = {"queue": self.queue_name, "queueing_lock": self.lock(job_id)}
            if delay:
                options["schedule_in"] = {"seconds": delay}
            jobs.append(
                self.app.configure_task(PROCESS_TASK, **options).make_new_job(job_id=job_id)
            )
        return jobs

    async def _flush(self) -> None:
        """Defer what is pending, ``batch`` announcements at a time, until nothing is."""
        taken: list[tuple[str, float, asyncio.Future[None]]] = []
        try:
            while self._pending:
                taken, self._pending = self._pending[: self.batch], self._pending[self.batch :]
                try:
                    await self._defer(self._messages(taken), [job_id for job_id, _, _ in taken])
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


class _Runner:
    """The jobs one worker process runs, apart from the Procrastinate messages that announced them.

    A message is finished as soon as its jobs have started: Procrastinate's
    slots count messages, this counts model calls (at most ``concurrency``).
    A message that finds every slot taken waits at most ``hold`` seconds,
    then announces its jobs again for the other workers; Procrastinate runs
    only a few messages at once here (:data:`FETCH_SLOTS`), so a full worker
    stops fetching instead of hoarding messages.
    """

    def __init__(
        self,
        engine: Engine,
        queue: ProcrastinateQueue,
        worker_id: str,
        *,
        concurrency: int,
        hold: float,
    ) -> None:
        self.engine = engine
        self.queue = queue
        self.worker_id = worker_id
        self.free = concurrency
        self.hold = hold
        self.running: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.stop_at = 0.0
        self._freed = asyncio.Event()
        self._failures: dict[str, int] = {}

    async def take(self, job_ids: list[str], *, retries: int) -> None:
        """Start ``job_ids`` (as slots allow); hand back what could not start."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.hold
        started = 0
        try:
            for job_id in job_ids:
                if not await self._slot(deadline):
                    break
                task = loop.create_task(self._run(job_id, retries))
                self.running.add(task)
                task.add_done_callback(self._done)
                started += 1
        finally:
            rest = job_ids[started:]
            if rest:
                # Another worker (or this one, later) takes them: the store is the
                # source of truth, so a job announced twice is only a no-op claim.
                await asyncio.shield(
                    asyncio.gather(*(self.queue.enqueue(job_id) for job_id in rest))
                )

    async def _slot(self, deadline: float) -> bool:
        loop = asyncio.get_running_loop()
        while not self.free:
            wait = deadline - loop.time()
            if self.stopping or wait <= 0:
                return False
            self._freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._freed.wait(), wait)
        if self.stopping:
            return False
        self.free -= 1
        return True

    def _done(self, task: asyncio.Task[None]) -> None:
        self.running.discard(task)
        self.free += 1
        self._freed.set()

    async def _run(self, job_id: str, retries: int) -> None:
        try:
            await self.engine.process(job_id, self.worker_id)
        except TransientError as exc:
            # The store could not be reached: announce the job again with a
            # backoff, as Procrastinate's retry strategy did for a whole message.
            tries = self._failures.get(job_id, 0) + 1
            if tries >= retries:
                self._failures.pop(job_id, None)
                log.warning(
                    "job %s: store unreachable %d times (%s); left to the sweep",
                    job_id,
                    tries,
                    exc,
                    extra={"job_id": job_id},
                )
                return
            self._failures[job_id] = tries
            await self.queue.enqueue(job_id, delay=float(2 ** min(tries, 8)))
        except Exception:
            log.exception("job %s: unexpected error", job_id, extra={"job_id": job_id})
        else:
            self._failures.pop(job_id, None)

    def begin_stop(self) -> None:
        """Start no more jobs; messages waiting for a slot hand their jobs back."""
        if not self.stopping:
            self.stopping = True
            self.stop_at = asyncio.get_running_loop().time()
            self._freed.set()

    async def stop(self, grace: float) -> None:
        """Let running jobs finish ``grace`` s after :meth:`begin_stop`, then cancel them.

        A cancelled job is handed back by the engine (QUEUED again at once).
        """
        self.begin_stop()
        left = self.stop_at + grace - asyncio.get_running_loop().time()
        if self.running and left > 0:
            await asyncio.wait(set(self.running), timeout=left)
        for task in list(self.running):
            task.cancel()
        if self.running:
            await asyncio.gather(*self.running, return_exceptions=True)


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
    database. Registered: ``chatsvg.process`` (one attempt of each job a
    message announces; a store that cannot be reached makes the worker
    announce the job again with backoff, up to ``store_retries`` times, then
    the sweep takes over) and
    ``chatsvg.maintain`` (``recover()`` then ``sweep()``, every
    ``maintain_every`` seconds; ``None``: not scheduled). Apply Procrastinate's schema once with
    ``procrastinate schema --apply`` or ``app.schema_manager.apply_schema_async()``.
    """
    app = App(connector=connector)

    @app.task(name=PROCESS_TASK, queue=queue_name, pass_context=True)
    async def process(
        context: JobContext, job_id: str | None = None, job_ids: list[str] | None = None
    ) -> None:
        """Start the announced jobs on this worker's engine (one or several per message)."""
        ids = [job_id] if job_id is not None else list(job_ids or [])
        extra = context.additional_context
        runner: _Runner | None = extra.get(_RUNNER)
        if runner is not None:
            await runner.take(ids, retries=store_retries)
            return
        # A worker started without serve_procrastinate (the host's own
        # run_worker_async with the engine in additional_context): run them here.
        engine: Engine = extra[_ENGINE]
        await asyncio.gather(*(engine.process(i, extra[_WORKER_ID]) for i in ids))

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
    hold: float = 1.0,
    close_engine: bool = True,
    install_signal_handlers: bool = True,
    **worker_options: Any,
) -> None:
    """Run a Procrastinate worker for chatsvg jobs on this event loop until it is stopped.

    ``app`` comes from :func:`procrastinate_app` and must be open.
    ``engine_factory(queue)`` is awaited first and builds the engine (its
    queue is ``queue``, for retries and sweeps). Settings, each explicit:

    * ``concurrency`` (Procrastinate: 1): model calls one process runs at
      once. A message (which may announce several jobs) starts its jobs and
      is finished; the jobs run on in this process, at most ``concurrency``
      of them. Procrastinate itself runs :data:`FETCH_SLOTS` messages at
      once, so a worker whose every slot is busy stops fetching.
    * ``hold``: seconds a fetched message waits for a free slot before its
      jobs that have not started are announced again, for another worker.
    * ``shutdown_grace`` (Procrastinate: wait forever): seconds running jobs
      may finish on SIGTERM/SIGINT or cancellation; the rest are cancelled
      and handed back.
    * ``delete_jobs="always"``: finished Procrastinate jobs are deleted.
    * ``poll_interval`` (Procrastinate's ``fetch_job_polling_interval``: 5 s):
      an idle worker looks for new messages this often; a busy one fetches
      the next as soon as it has run the last.
    * ``listen_notify`` (Procrastinate: on): off by default. With it, every
      deferred message is a NOTIFY delivered to every worker, each of which
      wakes and runs a fetch, mostly empty: a cost per message that grows
      with the number of workers (at 4 workers and one message per job it
      was about 3 ms of CPU per job, a third of a whole job's cost;
      ``benchmarks/README.md``). Polling costs ``1 / poll_interval``
      fetches a second per idle worker instead, and delays a job's start by
      at most ``poll_interval`` on an idle worker, nothing against a 10-120
      s model call. Turn it on for the lowest pickup latency when there are
      few workers.

    Extra keyword arguments go to ``App.run_worker_async``.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if not (math.isfinite(poll_interval) and poll_interval > 0):
        raise ValueError("poll_interval must be a positive number of seconds")
    if not (math.isfinite(hold) and hold >= 0):
        raise ValueError("hold must be a number of seconds >= 0")
    queue = ProcrastinateQueue(app, queue_name=queue_name)
    engine = await engine_factory(queue)
    worker_id = f"procrastinate:{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"
    runner = _Runner(engine, queue, worker_id, concurrency=concurrency, hold=hold)
    options: dict[str, Any] = {
        "queues": [queue_name],
        "concurrency": FETCH_SLOTS,
        "shutdown_graceful_timeout": shutdown_grace,
        "delete_jobs": "always",
        "listen_notify": listen_notify,
        "fetch_job_polling_interval": poll_interval,
        "name": f"chatsvg-{socket.gethostname()}-{os.getpid()}",
        "additional_context": {_ENGINE: engine, _WORKER_ID: worker_id, _RUNNER: runner},
    }
    options.update(worker_options)
    # The signals are ours: the jobs run apart from Procrastinate's tasks, so a stop
    # must reach them too (Procrastinate stops gracefully when its task is cancelled).
    options["install_signal_handlers"] = False
    worker = asyncio.create_task(app.run_worker_async(**options))
    stopped_by_signal = False

    def on_signal() -> None:
        nonlocal stopped_by_signal
        stopped_by_signal = True
        _remove_handlers(loop)  # a second signal ends the process the default way
        runner.begin_stop()
        worker.cancel()

    loop = asyncio.get_running_loop()
    if install_signal_handlers:
        _add_handlers(loop, on_signal)
    try:
        try:
            await asyncio.shield(worker)
        except asyncio.CancelledError:
            runner.begin_stop()
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            await runner.stop(shutdown_grace)
            if stopped_by_signal:
                return
            raise
        except BaseException:
            # Procrastinate's worker ended on an error (its connection cut
            # mid-fetch): the running jobs get their grace, then the error goes up.
            await runner.stop(shutdown_grace)
            raise
        await runner.stop(shutdown_grace)
    finally:
        if install_signal_handlers:
            _remove_handlers(loop)
        if close_engine:
            await engine.store.aclose()
            aclose = getattr(engine.provider, "aclose", None)
            if aclose is not None:
                await aclose()


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _add_handlers(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    for sig in _SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, callback)


def _remove_handlers(loop: asyncio.AbstractEventLoop) -> None:
    for sig in _SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(sig)


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
