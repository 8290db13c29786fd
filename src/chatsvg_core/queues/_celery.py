"""Celery as the doorbell: a ``JobQueue`` that sends tasks, and the worker side that runs them.

The store is the source of truth; a Celery message only says "look at job X".
Duplicates and late deliveries are harmless (the claim is atomic), and a lost
message is found by the periodic sweep. What Celery must be told, and why:

* at-least-once: ``task_acks_late`` + ``task_reject_on_worker_lost`` (Celery
  acks before running by default, so a crash would lose the message), and
  ``worker_prefetch_multiplier=1`` (a worker does not hoard messages other
  workers could run);
* a countdown is held by the broker or the worker, unacknowledged: on Redis one
  longer than the visibility timeout is delivered again and again (kombu#337,
  celery#2481), on RabbitMQ one longer than ``consumer_timeout`` (30 min by
  default) kills the channel (celery#6760). Delays above ``max_countdown`` are
  not sent at all; the sweep announces the job once it is due;
* recovery (expired leases, refunds) and the sweep run as beat tasks. Both are
  compare-and-set in the database, so two beats running at once are harmless;
* Celery's own work per message is about a third of a whole job's cost, so
  announcements that wait together are one message naming several jobs
  (``PROCESS_MANY_TASK``), acked once all of them end; the jobs a process
  runs are bounded by ``max_in_flight``, and such a message takes as much of
  the prefetch window as its jobs would (``_window_strategy``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from chatsvg_core.errors import ConfigurationError

if TYPE_CHECKING:
    from celery import Celery

    from chatsvg_core.engine import SyncEngine
    from chatsvg_core.generate import Provider
    from chatsvg_core.jobs import Job

__all__ = [
    "DEFAULT_MAX_COUNTDOWN",
    "DEFAULT_PER_MESSAGE",
    "PROCESS_MANY_TASK",
    "PROCESS_TASK",
    "RECOVER_TASK",
    "SWEEP_TASK",
    "CeleryQueue",
    "CeleryWorkers",
    "setup_celery",
]

log = logging.getLogger("chatsvg_core.queue.celery")

T = TypeVar("T")

PROCESS_TASK = "chatsvg_core.process"
"""The task whose body is ``engine.process(job_id, worker_id)``: one job per message."""
PROCESS_MANY_TASK = "chatsvg_core.process_many"
"""The task whose body runs ``engine.process`` for each id of a list: one message, several jobs."""
RECOVER_TASK = "chatsvg_core.recover"
"""The beat task that runs ``engine.recover()``."""
SWEEP_TASK = "chatsvg_core.sweep"
"""The beat task that runs ``engine.sweep(overdue=...)``."""

DEFAULT_MAX_COUNTDOWN = 600.0
"""Longest delay handed to the broker (s): well below RabbitMQ's 30 min ``consumer_timeout``
and the one-hour Redis visibility timeout this module sets."""

DEFAULT_PER_MESSAGE = 8
"""Most job ids one :data:`PROCESS_MANY_TASK` message names (announcements waiting together)."""

# The message header that tells a worker's consumer how many jobs a message names
# before its body is decoded (see _window_strategy).
_JOBS_HEADER = "chatsvg_jobs"

# Publishing gives up fast: the job is already safe in the database, and the
# sweep announces it later; a host's submit must not hang on a broker outage.
_PUBLISH_RETRY = {
    "max_retries": 2,
    "interval_start": 0.0,
    "interval_step": 0.5,
    "interval_max": 1.0,
}


def _require_celery() -> None:
    try:
        import celery  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(
            "the Celery adapter needs the 'celery' extra: pip install 'chatsvg-core[celery]'",
            extra="celery",
        ) from exc


class CeleryQueue:
    """A :class:`~chatsvg_core.queues.JobQueue` that sends Celery tasks for announcements.

    ``enqueue(job_id, delay)`` sends :data:`PROCESS_TASK` with ``countdown=delay``
    when ``delay <= max_countdown``; a longer delay sends nothing, and the
    sweep (``Engine.sweep(overdue=...)``) announces the job once it is due.
    A publish that fails (broker down) is logged and dropped for the same
    reason: the job is already committed, and the sweep finds it. Publishing
    is blocking I/O in Celery, so it runs off the loop, on a few publishing
    threads per process (see ``_Publisher``).

    Announcements of jobs due now that wait for a publishing thread together
    (concurrent submits) go out as one :data:`PROCESS_MANY_TASK` message
    naming up to ``per_message`` job ids: Celery's own cost per message
    (receiving, tracing, acking) is about a third of a whole job's cost, and
    a message is only a doorbell, so naming several jobs is as safe as
    naming one (each still reaches ``engine.process``, whose claim is
    atomic). A lone announcement, and every delayed one, is a
    :data:`PROCESS_TASK` message of its own, as before. ``per_message=1``
    sends every announcement on its own (workers of a release before
    :data:`PROCESS_MANY_TASK` existed do not know that task).
    """

    def __init__(
        self,
        app: Celery,
        *,
        task_name: str = PROCESS_TASK,
        many_task_name: str = PROCESS_MANY_TASK,
        queue: str | None = None,
        max_countdown: float = DEFAULT_MAX_COUNTDOWN,
        per_message: int = DEFAULT_PER_MESSAGE,
    ) -> None:
        if not (math.isfinite(max_countdown) and max_countdown >= 0):
            raise ConfigurationError("max_countdown must be a finite number of seconds >= 0")
        if per_message < 1:
            raise ConfigurationError("per_message must be at least 1", per_message=per_message)
        self.app = app
        self.task_name = task_name
        self.many_task_name = many_task_name
        self.queue = queue
        self.max_countdown = max_countdown
        self.per_message = per_message
        self.dropped = 0
        """Announcements not sent (delay over the cap, or the broker refused): the sweep's."""
        self.messages = 0
        """Messages published (one per message, whatever the number of jobs it names)."""
        self._publisher_lock = threading.Lock()
        self._dropped_lock = threading.Lock()
        self._publisher_of_pid: _Publisher | None = None

    def send(self, job_id: str, delay: float = 0.0) -> bool:
        """Publish now, from sync code; ``False`` when left to the sweep."""
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(f"delay must be a finite number of seconds >= 0, not {delay!r}")
        if delay > self.max_countdown:
            self._drop()
            return False
        return self._publish([job_id], delay, None)

    def _drop(self, count: int = 1) -> None:
        # The publishing threads count too: an unlocked += could lose one.
        with self._dropped_lock:
            self.dropped += count

    def _publish(self, job_ids: list[str], delay: float, producer: Any, covers: int = 1) -> bool:
        """One message for ``job_ids`` (one id: the single-job task); ``covers`` announcements."""
        from kombu.exceptions import KombuError

        args: tuple[Any, ...]
        if len(job_ids) == 1:
            task, args, headers = self.task_name, (job_ids[0],), None
        else:
            task, args = self.many_task_name, (job_ids,)
            headers = {_JOBS_HEADER: len(job_ids)}
        try:
            self.app.send_task(
                task,
                args=args,
                countdown=delay or None,
                queue=self.queue,
                retry=True,
                retry_policy=_PUBLISH_RETRY,
                ignore_result=True,
                producer=producer,
                headers=headers,
            )
        except (KombuError, OSError) as exc:
            self._drop(covers)
            log.warning(
                "could not publish job(s) %s (left to the sweep): %s",
                ", ".join(job_ids),
                exc,
                extra={"job_id": job_ids[0]},
            )
            return False
        with self._dropped_lock:
            self.messages += 1
        return True

    async def enqueue(self, job_id: str, *, delay: float = 0.0, attempt: int = 0) -> None:
        """Announce ``job_id`` ``delay`` seconds from now (see the class docs for the cap).

        Returns once the message is published (or given up on: it is the
        sweep's then). ``attempt`` is ignored: Celery does not drop a message
        for its id.
        """
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(f"delay must be a finite number of seconds >= 0, not {delay!r}")
        if delay > self.max_countdown:
            self._drop()
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._publisher().put((job_id, delay, loop, done))
        await done

    def _publisher(self) -> _Publisher:
        publisher = self._publisher_of_pid
        if publisher is None or publisher.pid != os.getpid():
            with self._publisher_lock:
                publisher = self._publisher_of_pid
                if publisher is None or publisher.pid != os.getpid():
                    # A forked child has its parent's object but not its thread.
                    publisher = self._publisher_of_pid = _Publisher(self)
        return publisher


# (job id, delay, the awaiting loop, its future)
_Announcement = tuple[str, float, asyncio.AbstractEventLoop, "asyncio.Future[None]"]


class _Publisher:
    """The threads (a few per process) that publish a :class:`CeleryQueue`'s announcements.

    ``enqueue`` runs on an event loop and publishing is blocking I/O, so it
    must leave the loop. A thread hop per message (``to_thread``) plus a
    producer taken from Celery's pool and given back per message cost about
    twice Celery's own publishing (0.9-1.5 ms of CPU per message against
    0.4-0.8 ms with one held producer, on this project's benchmark machine).
    Here announcements wait in one queue; a publishing thread takes up to
    ``_BATCH`` of them (or ``per_message``, if more), publishes them on one
    producer, and settles their futures with one wake-up per loop. The due
    ones it took go out together, ``per_message`` job ids a message
    (``_messages``): a worker then receives, traces and acks one message for
    several jobs, which is most of what Celery costs per job.

    A broker outage must not hold up ``submit``: after a publish fails, the
    announcements that come within the next second are dropped at once
    (logged, counted in ``dropped``; the sweep announces them), instead of
    each waiting out the retry policy in turn behind the publishing threads.
    """

    _PAUSE_AFTER_FAILURE = 1.0
    # A few threads, each with its own producer (connection): a Redis publish
    # waits for its reply, and one thread would publish one round trip at a
    # time (announcing fell behind the workers on a loaded machine). Small
    # batches share the waiting announcements out among them.
    _THREADS = 4
    _BATCH = 8

    def __init__(self, queue: CeleryQueue) -> None:
        import queue as queues

        self.pid = os.getpid()
        self._queue = queue
        self._waiting: queues.SimpleQueue[_Announcement] = queues.SimpleQueue()
        self._empty = queues.Empty
        self._down_until = 0.0
        for n in range(self._THREADS):
            name = f"chatsvg-celery-publish-{n}"
            threading.Thread(target=self._run, name=name, daemon=True).start()

    def put(self, item: _Announcement) -> None:
        self._waiting.put(item)

    def _run(self) -> None:
        take = max(self._BATCH, self._queue.per_message)
        while True:
            batch = [self._waiting.get()]
            while len(batch) < take:
                try:
                    batch.append(self._waiting.get_nowait())
                except self._empty:
                    break
            try:
                self._publish_all(batch)
            except Exception:  # never let the thread die: the next batch tries again
                log.exception("could not publish %d announcement(s)", len(batch))
            finally:
                self._settle(batch)

    def _messages(self, batch: list[_Announcement]) -> list[tuple[list[str], float, int]]:
        """The messages for ``batch``: (job ids, delay, announcements each covers).

        Due announcements together, up to ``per_message`` ids a message (a
        job announced twice at once is named once: one delivery is all a
        doorbell needs); each delayed one alone, with its countdown.
        """
        per_message = self._queue.per_message
        due: dict[str, int] = {}
        messages: list[tuple[list[str], float, int]] = []
        for job_id, delay, _, _ in batch:
            if delay or per_message == 1:
                messages.append(([job_id], delay, 1))
            else:
                due[job_id] = due.get(job_id, 0) + 1
        ids = list(due)
        for i in range(0, len(ids), per_message):
            chunk = ids[i : i + per_message]
            messages.append((chunk, 0.0, sum(due[j] for j in chunk)))
        return messages

    def _publish_all(self, batch: list[_Announcement]) -> None:
        queue = self._queue
        if time.monotonic() < self._down_until:
            queue._drop(len(batch))
            log.warning("broker unavailable: %d announcement(s) left to the sweep", len(batch))
            return
        settled = 0  # announcements published or counted as dropped
        try:
            with queue.app.producer_or_acquire() as producer:
                _hold_redis_client(producer.channel)
                for job_ids, delay, covers in self._messages(batch):
                    published = queue._publish(job_ids, delay, producer, covers)
                    settled += covers
                    if not published:
                        self._down_until = time.monotonic() + self._PAUSE_AFTER_FAILURE
                        break
        finally:
            # Whatever stopped the batch (an outage, or an error no outage
            # explains), the rest is the sweep's, and counted as such.
            rest = len(batch) - settled
            if rest:
                queue._drop(rest)
                log.warning("broker unavailable: %d announcement(s) left to the sweep", rest)

    @staticmethod
    def _settle(batch: list[_Announcement]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for _, _, loop, done in batch:
            by_loop.setdefault(loop, []).append(done)
        for loop, futures in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, futures)


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for done in futures:
        if not done.done():  # its caller may have been cancelled meanwhile
            done.set_result(None)


class CeleryWorkers:
    """What :func:`setup_celery` made: the queue, the tasks and each process's engine.

    ``engine()`` is this process's :class:`~chatsvg_core.engine.SyncEngine`,
    opened on first use (in a prefork child, at ``worker_process_init``) and
    shared by every task thread of the process: one event loop and one
    connection pool per process, never ``asyncio.run`` per task.

    Shutdown: when a worker of this app begins a warm shutdown (SIGTERM),
    running jobs get ``shutdown_grace`` seconds to finish; then
    :meth:`hand_back` cancels the rest, which hands each job back to the
    store (QUEUED, announced again) instead of leaving it RUNNING until its
    lease lapses. This covers the pools that run tasks in the worker's own
    process (threads, gevent, solo); a prefork child is not told of the
    shutdown, and its job, if killed, waits for ``recover``. A job of a
    several-job message still waiting for a slot when the shutdown begins
    is not started: it is announced again at once, for another worker.

    Jobs in flight: at most ``max_in_flight`` jobs run at once in one
    process (default: the worker's pool size, ``--concurrency``), whatever
    the messages. A message of one job takes one pool slot and one of these;
    a message of several takes one pool slot and one of these per job, so
    the pool's slots alone no longer bound the model calls.
    """

    def __init__(
        self,
        app: Celery,
        queue: CeleryQueue,
        open_engine: Callable[[CeleryQueue], SyncEngine],
        *,
        overdue: float,
        shutdown_grace: float = 10.0,
        close_engine: bool = True,
        max_in_flight: int | None = None,
    ) -> None:
        if max_in_flight is not None and max_in_flight < 1:
            raise ConfigurationError(
                "max_in_flight must be at least 1", max_in_flight=max_in_flight
            )
        self.app = app
        self.queue = queue
        self.max_in_flight = max_in_flight
        self.overdue = overdue
        self.shutdown_grace = shutdown_grace
        self.close_engine = close_engine
        self._open_engine = open_engine
        self._lock = threading.Lock()
        self._engine: SyncEngine | None = None
        self._pid: int | None = None
        # The engine's asyncio loop, when its portal runs one (see process()).
        self._loop: asyncio.AbstractEventLoop | None = None
        # The process() calls running on the engine's loop (touched only there).
        self._running: set[asyncio.Task[Any]] = set()
        self._hostnames: set[str] = set()
        self._stopping = threading.Event()
        # The worker's pool size (its --concurrency), read when it starts.
        self._pool_size: int | None = None
        # This process's slots for jobs in flight (used only on the engine's loop).
        self._slots = _Slots(1)

    def engine(self) -> SyncEngine:
        """This process's engine (opened once per process, again after ``fork``)."""
        with self._lock:
            if self._engine is None or self._pid != os.getpid():
                # A forked child must not use its parent's connections: open its own.
                self._engine = self._open_engine(self.queue)
                self._pid = os.getpid()
                self._loop = _running_asyncio_loop(self._engine)
                self._running = set()
                self._slots = _Slots(self.in_flight_limit())
                # Started here, where blocking is allowed: the shutdown hook
                # runs in a signal handler (under gevent, in the hub), where
                # even starting a thread is refused. It only sets an event.
                watcher = threading.Thread(
                    target=self._hand_back_on_shutdown, name="chatsvg-hand-back", daemon=True
                )
                watcher.start()
            return self._engine

    def in_flight_limit(self) -> int:
        """Most jobs one process runs at once: ``max_in_flight``, else the worker's pool size."""
        return self.max_in_flight or self._pool_size or _DEFAULT_IN_FLIGHT

    def close(self) -> None:
        """Close this process's engine, if it opened one (and ``close_engine`` is set)."""
        with self._lock:
            engine, self._engine = self._engine, None
            if engine is not None and self._pid == os.getpid() and self.close_engine:
                engine.close()

    def hand_back(self) -> int:
        """Cancel every job this process is running; each goes back to QUEUED. How many.

        Returns once every cancelled attempt has written its hand-back. Call
        it from any thread but the engine's loop (the shutdown hook does).
        """
        with self._lock:
            engine = self._engine if self._pid == os.getpid() else None
        if engine is None:
            return 0

        async def cancel_all() -> int:
            running = list(self._running)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            return len(running)

        handed: int = engine.portal.call(cancel_all)
        if handed:
            log.info("handed %d running job(s) back at shutdown", handed)
        return handed

    def _shutting_down(self, sender: object = None, **_: Any) -> None:
        # Sent from the worker's signal handler: must not block. Other apps'
        # workers in this process (tests run several) are not ours to stop.
        if self._hostnames and sender not in self._hostnames:
            return
        self._stopping.set()

    def _hand_back_on_shutdown(self) -> None:
        self._stopping.wait()
        # Jobs waiting for a slot are not started: they are announced again now.
        with self._lock:
            engine = self._engine if self._pid == os.getpid() else None
        if engine is not None:
            try:
                if self._loop is not None:
                    self._loop.call_soon_threadsafe(self._slots.stop)
                else:
                    engine.portal.call(self._slots.stop)
            except RuntimeError:  # the loop is already closed: nothing waits
                pass
        time.sleep(self.shutdown_grace)
        try:
            self.hand_back()
        except Exception:  # the loop or the store already gone: recovery's job now
            log.warning("could not hand running jobs back at shutdown", exc_info=True)

    @staticmethod
    def worker_id() -> str:
        """``celery@host:pid:thread``: a label for events and the job row (tokens fence)."""
        return f"celery@{_hostname()}:{os.getpid()}:{threading.get_ident()}"

    def maintain(self, every: float, stop: threading.Event) -> threading.Thread:
        """Run ``recover`` + ``sweep`` every ``every`` s on a daemon thread until ``stop``.

        The beat's work without a beat process (Celery's ``-B`` does not run
        under gevent). Safe beside a beat and in every worker: both passes
        are compare-and-set in the database.
        """

        def loop() -> None:
            while not stop.wait(every):
                try:
                    self.recover()
                    self.sweep()
                except Exception:  # a store or broker outage: try again next period
                    log.warning("recovery pass failed; retrying in %.0f s", every, exc_info=True)

        thread = threading.Thread(target=loop, name="chatsvg-maintain", daemon=True)
        thread.start()
        return thread

    def process(self, job_id: str) -> str | None:
        """The task body: one attempt of ``job_id``; the status it left, or ``None``.

        Also ``None`` when :meth:`hand_back` cancelled the attempt (the job is
        QUEUED again and announced; this message is done).
        """
        if self._stopping.is_set():
            # Shutting down: a message that arrives now (the hand-back's own
            # re-announcement, an ETA coming due) goes back to the broker for
            # another worker instead of starting an attempt that would be
            # handed back, or would hold up the shutdown.
            from celery.exceptions import Reject

            raise Reject("worker shutting down", requeue=True)
        engine = self.engine()
        worker_id = self.worker_id()
        job = self._call(engine, self._attempt(engine, job_id, worker_id))
        return None if job is None else job.status.value

    def process_many(self, job_ids: list[str]) -> list[str | None]:
        """The task body of a message naming several jobs: one attempt of each, at once.

        Returns (and Celery acks the message) once every job has ended its
        attempt, been handed back, or found nothing to do; a redelivery after
        a crash is therefore only duplicate deliveries, which the claim
        refuses. The jobs run concurrently on the process's loop, each in one
        of the process's in-flight slots (see the class docs); an error of one
        job does not stop the others, and the first is raised after all end.
        """
        if self._stopping.is_set():
            from celery.exceptions import Reject

            raise Reject("worker shutting down", requeue=True)
        ids = [job_ids] if isinstance(job_ids, str) else list(job_ids)
        engine = self.engine()
        worker_id = self.worker_id()

        async def attempts() -> list[Job | BaseException | None]:
            return await asyncio.gather(
                *(self._attempt(engine, job_id, worker_id) for job_id in ids),
                return_exceptions=True,
            )

        outcomes = self._call(engine, attempts())
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return [None if o is None else o.status.value for o in outcomes]  # type: ignore[union-attr]

    def _call(self, engine: SyncEngine, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the engine's loop and wait for it (from a task's thread)."""
        loop = self._loop
        if loop is None:

            async def run() -> T:
                return await coroutine

            return engine.portal.call(run)
        # The portal's call makes two round trips to the loop (start the
        # task, then its result) and a cancel scope: 0.2 ms of CPU per call
        # under gevent, against 0.08 ms for this one round trip.
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    async def _attempt(self, engine: SyncEngine, job_id: str, worker_id: str) -> Job | None:
        """One attempt of ``job_id`` in one of this process's in-flight slots."""
        slots = self._slots
        if not await slots.take():
            # The worker began shutting down before this job could start: hand
            # the announcement back (another worker takes the job).
            await _announce_again(engine, job_id)
            return None
        try:
            task = asyncio.ensure_future(engine.engine.process(job_id, worker_id))
            self._running.add(task)
            try:
                return await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if task.cancelled() and not (current and current.cancelling()):
                    return None  # handed back by hand_back(), not this call cancelled
                raise
            finally:
                self._running.discard(task)
        finally:
            slots.give()

    def recover(self) -> dict[str, int]:
        """The recovery beat task's body."""
        report = self.engine().recover()
        return {
            "requeued": len(report.requeued),
            "failed": len(report.failed),
            "refunded": len(report.refunded),
        }

    def sweep(self) -> int:
        """The sweep beat task's body: announce jobs overdue by ``overdue`` seconds."""
        return self.engine().sweep(overdue=self.overdue)


_DEFAULT_IN_FLIGHT = 200
"""Jobs in flight per process when neither ``max_in_flight`` nor a worker's pool size is known."""


async def _announce_again(engine: SyncEngine, job_id: str) -> None:
    queue = engine.engine.queue
    if queue is None:
        return  # the sweep announces it
    try:
        await queue.enqueue(job_id)
    except Exception:  # the job is QUEUED in the store: the sweep announces it
        log.warning("could not announce job %s again", job_id, exc_info=True)


class _Slots:
    """A process's slots for jobs in flight, on the engine's loop (first come, first served).

    A semaphore that can also be stopped: :meth:`take` then returns ``False``
    to every waiter at once (a job not yet started is not started during a
    shutdown), which ``asyncio.Semaphore`` cannot say.
    """

    def __init__(self, size: int) -> None:
        self.free = size
        self.stopped = False
        self._waiters: collections.deque[asyncio.Future[bool]] = collections.deque()

    async def take(self) -> bool:
        """Wait for a slot; ``False`` (and no slot) once stopped."""
        if self.stopped:
            return False
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return True
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self.give()  # handed a slot just as it was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def give(self) -> None:
        """Return a slot: to the first waiter, if any."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)
                return
        self.free += 1

    def stop(self) -> None:
        """Refuse every waiting and later :meth:`take`."""
        self.stopped = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(False)


@functools.cache
def _hostname() -> str:
    return socket.gethostname()


def _running_asyncio_loop(engine: SyncEngine) -> asyncio.AbstractEventLoop | None:
    """The asyncio loop behind ``engine``'s portal; ``None`` if it runs another (trio)."""
    try:
        loop: asyncio.AbstractEventLoop = engine.portal.call(_current_loop)
    except RuntimeError:  # not an asyncio loop (trio), or the portal is not running
        return None
    return loop


async def _current_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def _window_strategy(task: Any, app: Any, consumer: Any, **options: Any) -> Any:
    """Celery's task strategy for :data:`PROCESS_MANY_TASK`, with a prefetch window counted in jobs.

    ``worker_prefetch_multiplier=1`` lets a worker hold one message per pool
    slot, so that it never holds work it cannot start while another worker
    could. A message naming n jobs would break that n-fold: a worker with
    200 slots could take 200 messages, 1,600 jobs, of which only
    ``max_in_flight`` run. So each such message borrows n - 1 from the
    consumer's prefetch window when it arrives (as Celery itself lends one
    to a message with an ETA) and pays it back when it is acked or
    rejected: the window counts jobs, as with one message per job. The
    window never drops below 1 (what could not be borrowed is not paid
    back), and Celery's loop applies the new count on its next turn, so a
    worker may take one message more than its window meanwhile; the
    in-flight slots still bound what runs.
    """
    from celery.worker.strategy import default

    handle = default(task, app, consumer, **options)

    def on_message(
        message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kw: Any
    ) -> Any:
        qos = consumer.qos
        try:
            jobs = int((message.headers or {}).get(_JOBS_HEADER, 1))
        except (TypeError, ValueError):
            jobs = 1
        if qos is not None and jobs > 1:
            with qos._mutex:
                # value 0: no prefetch limit at all; nothing to count.
                debt = min(jobs - 1, qos.value - 1) if qos.value else 0
                qos.value -= debt
            if debt:
                repay = _Repay(qos, debt)
                ack, reject = repay.after(ack), repay.after(reject)
        return handle(message, body, ack, reject, callbacks, **kw)

    return on_message


class _Repay:
    """Gives a message's borrowed prefetch back to its consumer's window, once."""

    def __init__(self, qos: Any, debt: int) -> None:
        self.qos = qos
        self.debt = debt
        self._lock = threading.Lock()

    def after(self, settle: Callable[..., Any]) -> Callable[..., Any]:
        """``settle`` (the message's ack or reject), the window paid back first."""

        def settle_and_repay(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                debt, self.debt = self.debt, 0
            if debt:
                # Before the ack: on Redis the ack's refill (see _redis_refill_step)
                # then sees the wider window at once.
                self.qos.increment_eventually(debt)
            return settle(*args, **kwargs)

        return settle_and_repay


def _apply_window(consumer: Any) -> None:
    """Apply a changed prefetch window now (Redis: a local count, no I/O) instead of next turn."""
    qos = getattr(consumer, "qos", None)
    if qos is not None and qos.prev != qos.value:
        qos.update()


def _resultless_task_base() -> type[Any]:
    """A Celery ``Task`` class whose tasks keep one result backend per process: a disabled one.

    Celery reads ``task.backend`` twice per task run (``mark_as_done`` and
    ``process_cleanup``), even with results ignored, and a task without a
    backend of its own asks ``app.backend``, which is thread-local unless
    ``result_backend_thread_safe`` is set. Under the gevent pool a thread-local
    is greenlet-local, and every task runs in a new greenlet, so Celery built
    a backend for every task, each time scanning every installed package's
    entry points for backend aliases: measured at about 3-5 ms of CPU per
    task on the benchmark machine, as much as the rest of Celery's own work.
    These tasks store no result (the job's outcome is in the database), so a
    disabled backend made once per task object is exactly right.
    """
    from celery import Task
    from celery.backends.base import DisabledBackend

    class ResultlessTask(Task):  # type: ignore[misc]
        @property
        def backend(self) -> Any:
            backend = getattr(self, "_backend", None)
            if backend is None:
                backend = self._backend = DisabledBackend(self.app)
            return backend

        @backend.setter
        def backend(self, value: Any) -> None:
            self._backend = value

    return ResultlessTask


def _immediate_acks_step() -> type[Any]:
    """A consumer bootstep: on a green pool, a late ack is sent when the task ends, not later.

    Without an event-loop hub (the gevent and eventlet pools run Celery's
    ``synloop``), Celery before 5.7 defers every ack to the top of the next
    loop iteration, which first waits up to 2 s in ``drain_events`` for
    another broker frame. With ``acks_late`` the prefetch window (prefetch
    multiplier x slots) stays full of finished but unacked messages
    meanwhile, so no new message is delivered: one worker ran about 25 short
    jobs a second with 50 slots and a tenth of a core busy. Celery 5.7 sends
    acks and rejects at once (celery#10263); this step does the same on older
    versions, for acks and rejects only (other deferred operations stay in the
    loop). On 5.7 it takes over Celery's own immediate acks, for the reason below.

    The acks go out through one :class:`_AckSender` per consumer, one batch at
    a time, never from every ending task at once: kombu's Redis channel takes
    each ack's connection from a pool of 10 that raises past it ("Too many
    connections"), and 50 tasks ending together overflowed it. A failed ack
    left its message in kombu's ``unacked`` hash and its prefetch slot taken
    for good, and a fetch that found the pool empty had popped a message that
    it then lost (no copy left in Redis): the one job a benchmark round
    waited for forever.
    """
    from celery import bootsteps

    class ImmediateAcks(bootsteps.StartStopStep):  # type: ignore[misc]
        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            sender = parent.chatsvg_acks = _AckSender()
            if hasattr(type(parent), "call_soon_ack"):
                # Celery >= 5.7 sends each ack at once by itself, from every
                # ending task at the same time: on Redis that is the pool
                # overflow above again (tested: 400 tasks in bursts of 50 left
                # 37 messages unacked with 5.7.0 alone). Its acks go through
                # the sender too.
                immediate = parent.call_soon_ack

                def call_soon_ack(p: Any, *args: Any, **options: Any) -> Any:
                    if parent.hub is None:
                        sender.send(functools.partial(p, *args, **options))
                        return p
                    return immediate(p, *args, **options)

                # Read, like call_soon below, when the loop builds the task handler.
                parent.call_soon_ack = call_soon_ack
                return
            deferred = parent.call_soon

            def call_soon(p: Any, *args: Any, **options: Any) -> Any:
                if parent.hub is None and getattr(p, "__name__", "") in _ACK_CALLS:
                    sender.send(functools.partial(p, *args, **options))
                    return p
                return deferred(p, *args, **options)

            # An attribute of the consumer, read when its loop builds the task
            # handler (after the bootsteps are made).
            parent.call_soon = call_soon

    return ImmediateAcks


_ACK_CALLS = frozenset({"ack_log_error", "reject_log_error"})


def _run_each(operations: list[Callable[[], Any]]) -> None:
    for operation in operations:
        try:
            operation()
        except Exception:  # as Celery logs a failed deferred operation
            log.exception("could not acknowledge a message")


class _AckSender:
    """Runs a consumer's acks and rejects one batch at a time, on whichever task ends first.

    ``send`` queues the operation; if no batch is being sent, the caller sends
    every queued one (and those queued meanwhile); if one is, the caller
    returns at once and the sender takes its operation in the next batch.
    Nothing waits for a lock across I/O, so a task never blocks on another's
    ack, and at most one ack uses the broker connection pool at a time (a
    group commit: the busier the worker, the bigger the batches). ``batch``
    sends one batch; the Redis step replaces it with one that acknowledges
    the whole batch in one round trip.

    A task that has sent for ``pump_limit`` seconds and still finds acks
    waiting hands the sending to a thread of its own (a greenlet under
    gevent) and ends: on a busy worker the queue may never run dry, and a
    task must not stay running (its pool slot taken, its time limit
    running) for other tasks' acks.
    """

    pump_limit = 0.05

    def __init__(self) -> None:
        self._lock = threading.Lock()  # a thread pool's tasks call send() too
        self._waiting: list[Callable[[], Any]] = []
        self._sending = False
        self.batch: Callable[[list[Callable[[], Any]]], None] = _run_each
        self.spawn: Callable[[Callable[[], None]], None] = _start_daemon

    def send(self, operation: Callable[[], Any]) -> None:
        with self._lock:
            self._waiting.append(operation)
            if self._sending:
                return
            self._sending = True
        self._pump(self.pump_limit)

    def _pump(self, limit: float | None) -> None:
        """Send batches until none is waiting (this caller owns ``_sending``)."""
        owned = True
        try:
            started = time.monotonic()
            while True:
                with self._lock:
                    batch, self._waiting = self._waiting, []
                    if not batch:
                        self._sending = owned = False
                        return
                if limit is not None and time.monotonic() - started > limit:
                    with self._lock:  # not sent here: put back, first in line
                        self._waiting[:0] = batch
                    self.spawn(lambda: self._pump(None))
                    owned = False  # the new thread owns the sending now
                    return
                self.batch(batch)
        finally:
            if owned:  # killed mid-batch (GreenletExit): the next send() takes over
                with self._lock:
                    self._sending = False


def _start_daemon(target: Callable[[], None]) -> None:
    threading.Thread(target=target, name="chatsvg-celery-acks", daemon=True).start()


def _redis_refill_step() -> type[Any]:
    """A consumer bootstep: a green pool on Redis acks a batch at once and refills a freed slot.

    kombu's Redis transport fetches with one BRPOP at a time, and sends the
    next only when its poller comes round again, if the prefetch window
    (prefetch multiplier x slots) has room. When the window is full no BRPOP
    is out, and a green pool's loop (Celery's ``synloop``) is parked in
    ``drain_events(timeout=2.0)`` with nothing to wake it: an ack that frees
    a slot waits for that timeout, so a worker takes on new work only every
    2 s (about ``slots / 2`` short jobs a second; up to 2 s lost per job with
    real model calls). No setting shortens it (``polling_interval`` is only
    BRPOP's own server-side timeout).

    This step wraps the task channel's ``qos.ack``: once an ack (or a batch
    of them, below) has freed the window, it sends the BRPOP the poller
    would have sent, on the channel's own connection, whose socket the parked
    poller is already watching; the reply wakes it as any delivery does. It
    does so only when no BRPOP is out on that connection (``_in_poll``, which
    kombu sets before sending and clears after reading), so the connection is
    idle, and only when the poller watches that very socket (not while a
    reconnect is still greeting the server on a new one); a green pool runs
    every greenlet on one thread, so nothing else uses it meanwhile. Threads
    and prefork pools are left alone (prefork's event loop re-arms on every
    tick; a thread pool would race the poller).

    With the :func:`_immediate_acks_step` sender, a batch of acks is one
    pipeline (``ZREM`` and ``HDEL`` of every tag) instead of one per message.
    """
    from celery import bootsteps

    class RedisRefill(bootsteps.StartStopStep):  # type: ignore[misc]
        requires = ("celery.worker.consumer.tasks:Tasks",)

        def start(self, parent: Any) -> None:
            if not getattr(parent.pool, "is_green", False):
                return
            task_consumer = getattr(parent, "task_consumer", None)
            channel = getattr(task_consumer, "channel", None)
            transport = getattr(getattr(parent, "connection", None), "transport", None)
            if channel is None or getattr(transport, "driver_type", None) != "redis":
                return
            _hold_redis_client(channel)
            cycle = getattr(transport, "cycle", None)
            qos = channel.qos
            ack = qos.ack
            # The tags acked while a batch runs (None: no batch is running).
            batched: list[list[Any] | None] = [None]

            def ack_and_refill(delivery_tag: Any) -> None:
                tags = batched[0]
                if tags is not None:
                    tags.append(delivery_tag)
                    return
                ack(delivery_tag)
                _apply_window(parent)
                _try_refill(cycle, channel)

            qos.ack = ack_and_refill
            sender = getattr(parent, "chatsvg_acks", None)
            if sender is None:
                return  # the acks step is not installed: one round trip per ack

            def send_batch(operations: list[Callable[[], Any]]) -> None:
                tags: list[Any] = []
                batched[0] = tags
                try:
                    _run_each(operations)  # their acks only collect the tags
                finally:
                    batched[0] = None
                if tags:
                    _ack_all(qos, tags)
                _apply_window(parent)
                _try_refill(cycle, channel)

            # A restarted consumer (new connection, new channel) sets it again.
            sender.batch = send_batch

    return RedisRefill


def _ack_all(qos: Any, tags: list[Any]) -> None:
    """kombu's Redis ``QoS.ack`` for many tags: one pipeline, then the window freed for each."""
    from kombu.transport import virtual

    try:
        with qos.channel.conn_or_acquire() as client:
            # No MULTI/EXEC: each command stands alone (a tag gone from one and
            # not the other is what kombu's restore already copes with).
            pipe = client.pipeline(transaction=False)
            pipe.zrem(qos.unacked_index_key, *tags).hdel(qos.unacked_key, *tags).execute()
    except Exception:
        # As kombu's own failed ack: the messages stay delivered (their slots
        # taken) until the consumer's reconnect restores them to the queue,
        # or the visibility timeout does; either way they run again, harmlessly.
        log.critical("could not acknowledge %d message(s)", len(tags), exc_info=True)
        return
    for tag in tags:
        virtual.QoS.ack(qos, tag)


def _hold_redis_client(channel: Any) -> None:
    """Have a kombu Redis channel reuse one ``redis.Redis`` instead of building one per operation.

    kombu builds a new client for every command it sends outside the fetch
    (each delivery's ``unacked`` record, each ack, each publish and its
    exchange lookup), and redis-py's constructor fills a table of about 200
    response callbacks each time: about 5 % of a Celery worker's CPU on
    Redis in our profile. A client holds no connection of its own (every
    command takes one from the channel's pool and gives it back), so one per
    pool is safe to share between threads and greenlets. Other transports,
    and a channel already holding one, are left alone.
    """
    if getattr(channel, "_chatsvg_held_client", False) or not hasattr(channel, "_create_client"):
        return
    if getattr(getattr(channel, "connection", None), "driver_type", None) != "redis":
        return
    create = channel._create_client
    held: list[Any] = [None]

    def create_client(asynchronous: bool = False) -> Any:
        if asynchronous:  # the fetching connection: kombu keeps that one itself
            return create(asynchronous=True)
        pool = channel.pool  # a new one after a fork or reconnect: a new client
        client = held[0]
        if client is None or client.connection_pool is not pool:
            client = held[0] = create()
        return client

    channel._create_client = create_client
    channel._chatsvg_held_client = True


def _try_refill(cycle: Any, channel: Any) -> None:
    try:
        _refill(cycle, channel)
    except Exception:  # the poller's next turn sends it anyway
        log.debug("could not re-arm the Redis fetch", exc_info=True)


def _refill(cycle: Any, channel: Any) -> None:
    """Send the channel's next BRPOP now if the window has room and none is out (see above)."""
    if channel._in_poll or getattr(channel, "_closing", False):
        return
    if not channel.active_queues or not channel.qos.can_consume():
        return
    client = channel.client
    connection = getattr(client, "connection", None)
    sock = getattr(connection, "_sock", None)
    if sock is None:
        return  # not connected yet: the poller's own turn connects and registers it
    watched = getattr(cycle, "_chan_to_sock", {}).get((channel, client, "BRPOP"))
    if watched is not sock:
        # Not watched yet, or a reconnect is still greeting the server on a
        # new socket (kombu registers it after): a BRPOP now would be read as
        # the answer to the greeting, or never.
        return
    channel._brpop_start()


def setup_celery(
    app: Celery,
    database_url: str | None = None,
    *,
    provider: Provider | Callable[[], Provider] | None = None,
    open_engine: Callable[[CeleryQueue], SyncEngine] | None = None,
    close_engine: bool = True,
    shutdown_grace: float = 10.0,
    queue: str | None = None,
    recover_every: float = 30.0,
    sweep_every: float = 30.0,
    overdue: float | None = None,
    max_countdown: float = DEFAULT_MAX_COUNTDOWN,
    visibility_timeout: float = 3600.0,
    per_message: int = DEFAULT_PER_MESSAGE,
    max_in_flight: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
    **engine_options: Any,
) -> CeleryWorkers:
    """Configure ``app`` for chatsvg jobs and register the process, recover and sweep tasks.

    Args:
        app: the host's Celery app (its broker: ``redis://`` or ``amqp://``).
        database_url: the store every worker opens (``postgresql://...``).
        provider: the model provider, or a callable making one per process.
        open_engine: instead of ``database_url`` and ``provider``: makes
            this process's :class:`~chatsvg_core.engine.SyncEngine` from the
            queue it should announce retries on (called once per process).
        close_engine: close the engine when the worker shuts down (off when
            ``open_engine`` hands out an engine the host closes itself).
        shutdown_grace: on a worker's warm shutdown, seconds running jobs
            may finish before they are handed back (see :class:`CeleryWorkers`).
        queue: the Celery queue the tasks go to (default: Celery's default).
        recover_every: the recovery beat's period in seconds.
        sweep_every: the sweep beat's period in seconds.
        overdue: the sweep re-announces QUEUED jobs due this long ago
            (default: ``sweep_every``); shorter re-announces jobs that are
            merely waiting in a busy queue (harmless, but extra messages).
        max_countdown: the longest delay handed to the broker (see
            :class:`CeleryQueue`); must stay below ``visibility_timeout``.
        visibility_timeout: the Redis transport's redelivery timeout; longer
            than any job can run (a lease times its attempts).
        per_message: most jobs one message names when announcements wait
            together (see :class:`CeleryQueue`); 1 sends one message per job.
        max_in_flight: most jobs one worker process runs at once (default:
            the worker's ``--concurrency``); a message of several jobs takes
            one pool slot but one of these per job.
        storage_options: options for
            :func:`~chatsvg_core.storage.open_storage`.
        **engine_options: options for the :class:`~chatsvg_core.engine.Engine`
            (``lease=``, ``policy=``...), through
            :meth:`~chatsvg_core.engine.SyncEngine.open`.

    Sets ``task_acks_late``, ``task_reject_on_worker_lost``,
    ``worker_prefetch_multiplier=1``, the visibility timeout and two beat
    entries; run ``celery -A yourapp worker --pool gevent`` and one
    ``celery -A yourapp beat`` (two are harmless). The host API process uses
    ``workers.queue`` as the engine's queue to submit.
    """
    _require_celery()
    from celery import signals

    if not 0 < max_countdown < visibility_timeout:
        raise ConfigurationError(
            "max_countdown must be positive and below the visibility timeout, "
            "or Redis delivers a delayed task again and again",
            max_countdown=max_countdown,
            visibility_timeout=visibility_timeout,
        )
    if recover_every <= 0 or sweep_every <= 0:
        raise ConfigurationError("recover_every and sweep_every must be positive")
    if not (math.isfinite(shutdown_grace) and shutdown_grace >= 0):
        raise ConfigurationError("shutdown_grace must be a finite number of seconds >= 0")
    if (open_engine is None) == (database_url is None):
        raise ConfigurationError("setup_celery needs database_url or open_engine, not both")
    if database_url is not None and provider is None:
        raise ConfigurationError("setup_celery(database_url=...) needs a provider")
    lease = engine_options.get("lease")
    if isinstance(lease, timedelta) and lease.total_seconds() >= visibility_timeout:
        raise ConfigurationError(
            "the lease must be shorter than the visibility timeout",
            lease=lease.total_seconds(),
            visibility_timeout=visibility_timeout,
        )
    transport = dict(app.conf.broker_transport_options or {})
    transport["visibility_timeout"] = visibility_timeout
    route = {"queue": queue} if queue else {}
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=transport,
        # On a lost broker connection keep running jobs: their messages come
        # back and the duplicate is refused by the claim, while the running
        # attempt still finishes (cancelling it would waste a model call).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        beat_schedule={
            **(app.conf.beat_schedule or {}),
            "chatsvg-recover": {
                "task": RECOVER_TASK,
                "schedule": recover_every,
                "options": {**route, "expires": recover_every},
            },
            "chatsvg-sweep": {
                "task": SWEEP_TASK,
                "schedule": sweep_every,
                "options": {**route, "expires": sweep_every},
            },
        },
    )
    if queue:
        app.conf.task_routes = {
            **dict(app.conf.task_routes or {}),
            PROCESS_TASK: route,
            PROCESS_MANY_TASK: route,
            RECOVER_TASK: route,
            SWEEP_TASK: route,
        }
    celery_queue = CeleryQueue(
        app, queue=queue, max_countdown=max_countdown, per_message=per_message
    )

    def open_from_url(q: CeleryQueue) -> SyncEngine:
        from chatsvg_core.engine import SyncEngine

        assert database_url is not None and provider is not None
        return SyncEngine.open(
            database_url,
            provider=provider,
            queue=q,
            storage_options=storage_options,
            **engine_options,
        )

    workers = CeleryWorkers(
        app,
        celery_queue,
        open_engine or open_from_url,
        overdue=sweep_every if overdue is None else overdue,
        shutdown_grace=shutdown_grace,
        close_engine=close_engine,
        max_in_flight=max_in_flight,
    )

    # Plain functions, not bound methods: Celery checks a call's arguments
    # against the function's own signature.
    def process(job_id: str) -> str | None:
        return workers.process(job_id)

    def process_many(job_ids: list[str]) -> list[str | None]:
        return workers.process_many(job_ids)

    def recover() -> dict[str, int]:
        return workers.recover()

    def sweep() -> int:
        return workers.sweep()

    app.steps["consumer"].add(_immediate_acks_step())
    app.steps["consumer"].add(_redis_refill_step())
    base = _resultless_task_base()
    # shared=False: Celery's default adds a task to every app created later in
    # the process, where it would run with THIS app's engine and queue.
    app.task(
        name=PROCESS_TASK,
        base=base,
        ignore_result=True,
        acks_late=True,
        reject_on_worker_lost=True,
        shared=False,
    )(process)
    # Its own name, not a list accepted by PROCESS_TASK: a worker of an earlier
    # release refuses an unknown task by name (logged, left to the sweep)
    # instead of running a list as a job id, and messages of either form
    # already in the broker during a rolling deploy keep working.
    app.task(
        name=PROCESS_MANY_TASK,
        base=base,
        ignore_result=True,
        acks_late=True,
        reject_on_worker_lost=True,
        shared=False,
        # A class attribute of the task: a plain function there would be bound.
        Strategy=staticmethod(_window_strategy),
    )(process_many)
    app.task(name=RECOVER_TASK, base=base, ignore_result=True, shared=False)(recover)
    app.task(name=SWEEP_TASK, base=base, ignore_result=True, shared=False)(sweep)

    # Celery's signals are process-wide: each handler checks that the worker
    # is one of this app's (a process may hold several apps, as tests do).
    def ours(sender: object) -> bool:
        return getattr(sender, "app", app) is app

    def on_worker_init(sender: object = None, **_: Any) -> None:
        if ours(sender):
            workers._hostnames.add(str(getattr(sender, "hostname", "")))
            size = getattr(sender, "concurrency", None)
            if isinstance(size, int) and size > 0:
                workers._pool_size = size

    def on_process_init(**_: Any) -> None:
        # A prefork child opens its own engine before its first task.
        workers.engine()

    def on_shutdown(sender: object = None, **_: Any) -> None:
        if ours(sender):
            workers.close()

    signals.worker_init.connect(on_worker_init, weak=False)
    signals.worker_process_init.connect(on_process_init, weak=False)
    signals.worker_process_shutdown.connect(on_shutdown, weak=False)
    signals.worker_shutdown.connect(on_shutdown, weak=False)

    # A closure, not the bound method: Celery keys a bound method by its
    # function alone, so a second app's workers would never be told.
    def on_shutting_down(sender: object = None, **_: Any) -> None:
        workers._shutting_down(sender)

    signals.worker_shutting_down.connect(on_shutting_down, weak=False)
    return workers
