"""The arq adapter: announcements as arq jobs on Redis, one asyncio worker holding hundreds.

arq (https://arq-docs.helpmanual.io) runs coroutines on Redis: a job is a key
holding the call and a member of a sorted set scored by its due time. This
adapter keeps the library's design: the store decides, the arq job only says
"look at job X". Facts from arq's own code that shape it:

* ``enqueue_job`` drops a job whose id still has a job key (queued, deferred
  or running) or a result key. The message id is therefore
  ``<queue>:<job id>:<attempt>``: duplicates of one announcement collapse, and
  the retry of attempt *n*, announced while attempt *n*'s delivery is still
  running, gets a new id. Results are not kept (``keep_result=0``), so an id
  is free again once its arq job ends.
* An announcement the engine makes from inside the delivery of the same id
  (the job was delivered before it was due) would be dropped; it becomes
  arq's own ``Retry(defer=...)`` of the running arq job instead.
* A cancelled arq job (shutdown) stays in the queue and runs again; a job
  whose worker was killed runs again once its in-progress key lapses
  (``job_timeout`` + 10 s). Both are harmless duplicates here: the engine has
  already handed the job back or will recover it when its lease lapses.
* ``job_timeout`` defaults to 300 s and ``max_jobs`` to 10 in arq: both are
  set here for 10-120 s model calls (600 s, 500 jobs).
* Cron jobs are enqueued by every worker under one id per run time (arq's
  ``unique``), yet two can still run (arq issue #196); recovery and sweep are
  compare-and-set passes that are safe to run at once, so a duplicate costs
  one extra pass.
"""

from __future__ import annotations

import contextvars
import logging
import math
import os
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from arq import cron, func
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Retry, Worker
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chatsvg_core.engine import Engine
from chatsvg_core.errors import TransientError

__all__ = ["ArqQueue", "arq_worker", "arq_worker_settings", "run_arq_worker"]

log = logging.getLogger("chatsvg_core.queue")

DEFAULT_QUEUE = "chatsvg"
PROCESS_TASK = "chatsvg.process"
MAINTAIN_TASK = "chatsvg.maintain"
_ENGINE = "chatsvg_engine"
_WORKER_ID = "chatsvg_worker_id"


@dataclass
class _Delivery:
    """The arq job this task is running, and a re-announcement of itself made meanwhile."""

    message_id: str
    retry_in: float | None = None


_CURRENT: contextvars.ContextVar[_Delivery | None] = contextvars.ContextVar(
    "chatsvg_arq_delivery", default=None
)


class ArqQueue:
    """A :class:`~chatsvg_core.queues.JobQueue` on arq: ``enqueue`` adds an arq job.

    Args:
        redis: an arq pool (``arq.create_pool``); see :meth:`connect`.
        queue_name: the arq queue (a Redis sorted set) workers read.
        max_delay: longest delay handed to arq, in seconds. A longer one is
            not enqueued: the periodic sweep announces the job again once its
            wait is shorter (keep the sweep interval well under this).

    An announcement that cannot reach Redis is logged and dropped, never
    raised: the job is safe in the store and the next sweep announces it
    again (a submit whose job committed must not fail because the doorbell
    did not ring).
    """

    def __init__(
        self, redis: ArqRedis, *, queue_name: str = DEFAULT_QUEUE, max_delay: float = 3600.0
    ) -> None:
        if not max_delay > 0:
            raise ValueError("max_delay must be positive")
        self.redis = redis
        self.queue_name = queue_name
        self.max_delay = max_delay
        self._owned = False

    @classmethod
    async def connect(
        cls,
        url: str = "redis://localhost:6379/0",
        *,
        queue_name: str = DEFAULT_QUEUE,
        **options: Any,
    ) -> ArqQueue:
        """Open a pool on the Redis at ``url``; :meth:`aclose` closes it."""
        pool = await create_pool(RedisSettings.from_dsn(url), default_queue_name=queue_name)
        queue = cls(pool, queue_name=queue_name, **options)
        queue._owned = True
        return queue

    async def aclose(self) -> None:
        """Close the pool if :meth:`connect` opened it."""
        if self._owned:
            await self.redis.aclose()

    def message_id(self, job_id: str, attempt: int) -> str:
        """The arq job id of the announcement of ``job_id`` after ``attempt`` attempts."""
        return f"{self.queue_name}:{job_id}:{attempt}"

    async def enqueue(self, job_id: str, *, delay: float = 0.0, attempt: int = 0) -> None:
        """Announce ``job_id`` for ``delay`` s from now (over ``max_delay``: left to the sweep)."""
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(f"delay must be a finite number of seconds >= 0, not {delay!r}")
        if delay > self.max_delay:
            return
        message_id = self.message_id(job_id, attempt)
        current = _CURRENT.get()
        if current is not None and current.message_id == message_id:
            # arq would drop it (the running job holds this id): retry the running job instead.
            current.retry_in = delay if current.retry_in is None else min(current.retry_in, delay)
            return
        try:
            await self.redis.enqueue_job(
                PROCESS_TASK,
                job_id,
                _job_id=message_id,
                _queue_name=self.queue_name,
                _defer_by=delay or None,
            )
        except (RedisError, OSError) as exc:
            log.warning(
                "announcement of job %s lost (%s); the next sweep announces it again",
                job_id,
                exc,
                extra={"job_id": job_id},
            )


async def _process(ctx: dict[str, Any], job_id: str) -> None:
    """The arq task: one attempt of ``job_id`` through the engine."""
    engine: Engine = ctx[_ENGINE]
    delivery = _Delivery(ctx["job_id"])
    token = _CURRENT.set(delivery)
    try:
        await engine.process(job_id, ctx[_WORKER_ID])
    except TransientError as exc:
        # The store is unreachable (the claim did not happen): try this message
        # again later; after max_tries arq drops it and the sweep takes over.
        raise Retry(defer=min(30.0, 0.5 * 2 ** int(ctx.get("job_try", 1)))) from exc
    finally:
        _CURRENT.reset(token)
    if delivery.retry_in is not None:
        raise Retry(defer=delivery.retry_in)


async def _maintain(ctx: dict[str, Any]) -> None:
    """The arq cron job: recover expired leases, then announce every QUEUED job again."""
    engine: Engine = ctx[_ENGINE]
    await engine.recover()
    await engine.sweep()


def _every(seconds: int) -> dict[str, Any]:
    """arq cron fields for "every ``seconds``" (a divisor of 60 s, or of 60 minutes)."""
    if 0 < seconds <= 60 and 60 % seconds == 0:
        return {"second": set(range(0, 60, seconds))}
    minutes, rest = divmod(seconds, 60)
    if rest == 0 and 0 < minutes <= 60 and 60 % minutes == 0:
        return {"minute": set(range(0, 60, minutes)), "second": 0}
    raise ValueError("maintain_every must divide a minute (1-60 s) or an hour (whole minutes)")


def arq_worker_settings(
    engine_factory: Callable[[ArqQueue], Awaitable[Engine]],
    *,
    redis_url: str = "redis://localhost:6379/0",
    queue_name: str = DEFAULT_QUEUE,
    max_jobs: int = 500,
    job_timeout: float = 600.0,
    max_tries: int = 25,
    maintain_every: int | None = 30,
    max_delay: float = 3600.0,
    poll_delay: float = 0.5,
    shutdown_grace: int = 30,
    redis_outage: float = 60.0,
    close_engine: bool = True,
    **worker_options: Any,
) -> dict[str, Any]:
    """The settings of an arq worker that runs chatsvg jobs (pass them to ``arq.Worker``).

    ``engine_factory(queue)`` is awaited once when the worker starts, on the
    worker's loop, and builds the :class:`Engine` (open its store there:
    connection pools bind to the loop that made them); ``queue`` is the
    :class:`ArqQueue` on the worker's own Redis pool, for the engine's
    retries and sweeps. With ``close_engine`` the store (and the provider,
    if it has ``aclose``) is closed when the worker stops.

    Every arq default that matters for 10-120 s model calls is set:

    * ``max_jobs`` (arq: 10): generations one process runs at once; each
      awaits the model, so hundreds fit in one event loop.
    * ``job_timeout`` (arq: 300 s): an arq job running longer is cancelled
      (the engine hands the job back). Keep it above the longest model call
      with its in-process retries. It also decides how long the messages a
      SIGKILLed worker had fetched, but not yet claimed, wait: arq runs them
      again ``job_timeout`` + 10 s later (claimed ones return sooner, when
      their lease lapses and recovery announces the next attempt).
    * ``keep_result=0`` (arq: 1 hour): a finished arq job's id is free at once.
    * ``max_tries`` (arq: 5): how often one message may be re-run (store
      outages, early deliveries, cancelled runs); past it the sweep takes over.
    * ``maintain_every``: seconds between ``recover()`` + ``sweep()`` runs (a
      cron job every worker schedules; also run at startup). ``None``: no
      cron job, for a host that runs the maintenance elsewhere (one
      dedicated process, or its own scheduler).
    * ``shutdown_grace``: on SIGTERM/SIGINT, seconds running jobs may finish
      before they are cancelled and handed back (arq's ``job_completion_wait``).
    * ``redis_outage``: seconds of Redis unavailability the worker rides out
      (each command is retried with backoff; arq's own default is to let the
      first connection error end the worker). Jobs already running go on:
      they need only the store.

    Extra keyword arguments go to ``arq.Worker`` unchanged.
    """
    if max_jobs < 1:
        raise ValueError("max_jobs must be at least 1")
    if maintain_every is not None and maintain_every >= max_delay:
        raise ValueError("maintain_every must be shorter than max_delay (the sweep must run first)")

    async def startup(ctx: dict[str, Any]) -> None:
        queue = ArqQueue(ctx["redis"], queue_name=queue_name, max_delay=max_delay)
        ctx[_ENGINE] = await engine_factory(queue)
        ctx[_WORKER_ID] = f"arq:{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"

    async def shutdown(ctx: dict[str, Any]) -> None:
        engine: Engine | None = ctx.get(_ENGINE)
        if engine is None or not close_engine:
            return
        await engine.store.aclose()
        aclose = getattr(engine.provider, "aclose", None)
        if aclose is not None:
            await aclose()

    settings: dict[str, Any] = {
        "functions": [
            func(
                _process,
                name=PROCESS_TASK,
                keep_result=0,
                max_tries=max_tries,
                timeout=job_timeout,
            )
        ],
        "cron_jobs": []
        if maintain_every is None
        else [
            cron(
                _maintain,
                name=f"{MAINTAIN_TASK}:{queue_name}",
                run_at_startup=True,
                # arq holds a started message for (the longest function timeout
                # + 10 s) before another worker may run it: never longer than jobs'.
                timeout=job_timeout,
                **_every(maintain_every),
            )
        ],
        "redis_settings": _outage_tolerant(RedisSettings.from_dsn(redis_url), redis_outage),
        "queue_name": queue_name,
        "max_jobs": max_jobs,
        "job_timeout": job_timeout,
        "keep_result": 0,
        "max_tries": max_tries,
        "poll_delay": poll_delay,
        "job_completion_wait": shutdown_grace,
        "on_startup": startup,
        "on_shutdown": shutdown,
    }
    settings.update(worker_options)
    return settings


def _outage_tolerant(settings: RedisSettings, seconds: float) -> RedisSettings:
    """``settings`` whose commands and first connection are retried for about ``seconds``."""
    # Backoff 0.05 s doubling to a 1 s cap: about ``seconds`` retries of a second.
    settings.retry_on_error = [RedisConnectionError, RedisTimeoutError, OSError]
    settings.retry = RedisRetry(ExponentialBackoff(cap=1.0, base=0.05), max(1, int(seconds)))
    settings.conn_retries = max(1, int(seconds))
    settings.conn_retry_delay = 1
    return settings


class _Worker(Worker):
    """arq's worker, starting a poll's messages in a random order, each checked fresh first.

    A poll reads the oldest due message ids (up to ``queue_read_limit``,
    arq: five times ``max_jobs``) and arq tries each in turn as slots free
    up: WATCH its in-progress key, EXISTS, ZSCORE, then MULTI/EXEC or
    UNWATCH, four sequential round trips on the one loop that starts this
    worker's jobs. Every worker walks the same ids in the same order, so
    they race for the same message, and by the time a slot frees most ids
    of the batch were started or finished elsewhere (a message's id stays
    in the queue while it runs). With four workers and instant jobs, each
    message was tried about four times: 20 Redis requests per job, where
    a job needs about 8 (arq#492 reports the same at scale). Here:

    * each worker walks the batch in its own random order, so workers
      rarely race for one message (the oldest due ``queue_read_limit``
      messages start in any order, not oldest first);
    * when slots are free, the next ids are checked in one pipelined
      round trip (running? still queued and due?) and only as many waiting
      ones as there are free slots go to arq's own start, whose WATCH +
      MULTI still decides: a message started elsewhere meanwhile is refused
      as before, and one skipped here is read again at the next poll. The
      ids of this worker's own running jobs are skipped without asking
      Redis, and a stretch of ids running elsewhere is checked in doubling
      steps (8 up to 512 ids per round trip). The check is MGET + ZMSCORE
      (Redis 6.2 and later; before, a ZSCORE per id in the same round trip).
    """

    _zmscore = True

    async def _look_up(self, names: list[str]) -> tuple[list[Any], list[Any]]:
        """In-progress flags and queue scores of ``names``, in one round trip."""
        keys = [in_progress_key_prefix + name for name in names]
        if self._zmscore:
            try:
                async with self.pool.pipeline(transaction=False) as pipe:
                    pipe.mget(keys)
                    pipe.zmscore(self.queue_name, names)
                    running, scores = await pipe.execute()
                return list(running), list(scores)
            except ResponseError:  # unknown command ZMSCORE: Redis before 6.2
                self._zmscore = False
        async with self.pool.pipeline(transaction=False) as pipe:
            pipe.mget(keys)
            for name in names:
                pipe.zscore(self.queue_name, name)
            running, *scores = await pipe.execute()
        return list(running), scores

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        # This worker's own running messages need no round trip to be skipped.
        mine = {job_id for job_id, task in self.tasks.items() if not task.done()}
        ids = [job_id for job_id in job_ids if job_id.decode() not in mine]
        random.shuffle(ids)
        at = 0
        size = 8
        while at < len(ids):
            # Wait for a free slot first, so that what is checked is fresh.
            await self.sem.acquire()
            self.sem.release()
            free = max(1, self.max_jobs - self.job_counter)
            chunk = ids[at : at + max(free, size)]
            running, scores = await self._look_up([job_id.decode() for job_id in chunk])
            now = timestamp_ms()
            waiting = [
                i
                for i, (flag, score) in enumerate(zip(running, scores, strict=True))
                if not flag and score is not None and score <= now
            ][:free]
            # Past the last one taken; waiting ones not taken are checked again.
            at += waiting[-1] + 1 if waiting else len(chunk)
            # A run of ids that all run elsewhere (hundreds of long calls at the head
            # of the queue) is crossed in ever larger steps.
            size = 8 if waiting else min(2 * size, 512)
            if waiting:
                await super().start_jobs([chunk[i] for i in waiting])


def arq_worker(settings: dict[str, Any], **overrides: Any) -> Worker:
    """An ``arq.Worker`` for ``settings`` (from :func:`arq_worker_settings`), not yet running.

    For a host that runs the worker on its own event loop
    (``await worker.async_run()``, ``handle_signals=False`` in ``overrides``);
    :func:`run_arq_worker` runs one until SIGTERM. It is arq's ``Worker``
    with one change to how a poll starts messages: each worker takes them in
    its own random order and checks a batch in one pipelined round trip
    before arq's own claim, instead of arq's four sequential round trips for
    every message some worker already took (with four workers about half
    the Redis requests per job; benchmarks/README.md). ``arq
    module.WorkerSettings`` (arq's own CLI) runs arq's unchanged ``Worker``
    with the same settings, which works the same, with more round trips.
    """
    return _Worker(**{**settings, **overrides})


def run_arq_worker(settings: dict[str, Any]) -> None:
    """Run an arq worker with ``settings`` (from :func:`arq_worker_settings`) until SIGTERM.

    Blocks; handles SIGINT/SIGTERM (stop taking work, let running jobs finish
    for ``shutdown_grace`` s, cancel and hand back the rest). The worker is
    :func:`arq_worker`'s: arq's ``Worker`` with fewer Redis round trips per
    job started.
    """
    arq_worker(settings).run()
