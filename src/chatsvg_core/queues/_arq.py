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

import asyncio
import contextlib
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
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chatsvg_core.engine import Engine
from chatsvg_core.errors import TransientError

__all__ = ["ArqQueue", "arq_worker", "arq_worker_settings", "run_arq_worker"]

log = logging.getLogger("chatsvg_core.queue")

DEFAULT_QUEUE = "chatsvg"
PROCESS_TASK = "chatsvg.process"
MAINTAIN_TASK = "chatsvg.maintain"
# An arq worker whose queue holds nothing due reads it again this often (s), within
# poll_delay: an empty read is one cheap command, and a job submitted to an idle
# fleet starts this much later at most, not poll_delay later.
EMPTY_POLL = 0.05
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
    * ``poll_delay`` (arq: 0.5 s, kept): with :func:`run_arq_worker`, only
      how long a worker waits after a poll that found messages, all running
      elsewhere; it polls again at once while it finds work and reads an
      empty queue every ``EMPTY_POLL`` (0.05) s.
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


# Claims up to ``want`` of the given messages at once: each one still queued, due and
# not running anywhere gets its in-progress key, as arq's own WATCH + MULTI claim
# sets it (so a plain arq worker beside this one still sees it taken). Atomic, like
# any script. KEYS: the queue, then each message's in-progress key; ARGV: now (ms),
# the in-progress key's life (ms), want, then the message ids in KEYS' order.
# Returns how many ids it examined and the taken ids with their scores.
_CLAIM = """
local now = tonumber(ARGV[1])
local want = tonumber(ARGV[3])
local taken = {}
local seen = 0
for i = 2, #KEYS do
  seen = i - 1
  local id = ARGV[i + 2]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= now and redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('PSETEX', KEYS[i], ARGV[2], '1')
    taken[#taken + 1] = id
    taken[#taken + 1] = score
    if #taken >= 2 * want then
      break
    end
  end
end
return {seen, taken}
"""


class _Worker(Worker):
    """arq's worker with a shorter start path: claims in one round trip, polls again at once.

    arq's start path costs a worker most of its time with short jobs and
    several workers (benchmarks/README.md, "Jobs per second"):

    * a poll reads the oldest due message ids (up to ``queue_read_limit``,
      arq: five times ``max_jobs``) and arq tries each in turn, four
      sequential round trips (WATCH its in-progress key, EXISTS, ZSCORE,
      MULTI/EXEC or UNWATCH) on the one loop that starts this worker's jobs.
      Every worker walks the same ids in the same order, and a message's id
      stays in the queue while it runs, so with four workers each message
      was tried about four times (arq#492 reports the same at scale);
    * after a poll, arq sleeps until ``poll_delay`` has passed since it
      began, even when the poll started jobs and more are waiting: with
      short jobs a worker's slots stood empty a third of the time.

    Here each worker walks a poll's ids in its own random order, skips its
    own running ones without asking Redis, and claims the next ones with
    one script per round trip: every id still queued, due and not running
    gets its in-progress key (as arq's claim sets it, atomically), up to the
    free slots; the rest of the batch is read again at the next poll. A
    stretch of ids running elsewhere (hundreds of long calls at the head of
    the queue) is crossed in doubling steps (8 up to 512 ids per round
    trip). A poll that started jobs is followed by the next as soon as a
    slot is free; only a poll that found nothing waits ``poll_delay``. The
    jobs themselves run through arq's own ``run_job`` and ``finish_job``.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._slot_freed = asyncio.Event()
        self._started = 0
        self._read = 0
        self._claim: Any = None

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._slot_freed.set()

    async def _free_slot(self) -> bool:
        """Wait up to ``poll_delay`` for fewer than ``max_jobs`` jobs to run; False if none did.

        Bounded, so that a full worker (hundreds of long calls) still runs its
        heartbeat and cron every ``poll_delay``, as arq's own loop does.
        """

        async def freed() -> None:
            while self.job_counter >= self.max_jobs:
                self._slot_freed.clear()
                await self._slot_freed.wait()

        if self.job_counter < self.max_jobs:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(freed(), self.poll_delay_s)
        return self.job_counter < self.max_jobs

    async def _poll_iteration(self) -> None:
        # arq's iteration (read, start, reap, heartbeat and cron), run again at once
        # while it starts jobs, and every EMPTY_POLL s while the queue holds nothing
        # due but this worker's own running messages; arq's loop then waits out the
        # rest of poll_delay (after a read of messages running elsewhere, each of
        # which costs a look in Redis).
        began = self.loop.time()
        while True:
            self._read = self._started = 0
            await super()._poll_iteration()
            if not self.allow_pick_jobs or self.burst:
                return
            if self._started:
                await self._free_slot()
            elif self._read or self.loop.time() - began + EMPTY_POLL >= self.poll_delay_s:
                return
            else:
                await asyncio.sleep(EMPTY_POLL)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        if self._claim is None:
            self._claim = self.pool.register_script(_CLAIM)
        mine = {job_id for job_id, task in self.tasks.items() if not task.done()}
        ids = [job_id.decode() for job_id in job_ids]
        ids = [job_id for job_id in ids if job_id not in mine]
        self._read = len(ids)
        random.shuffle(ids)
        at = 0
        size = 8
        life = str(int(self.in_progress_timeout_s * 1000))
        while at < len(ids) and self.allow_pick_jobs:
            # Wait for a free slot first, so that what is claimed is fresh; none within
            # poll_delay: back to arq's loop (heartbeat, cron), the rest is read again.
            if not await self._free_slot():
                return
            want = self.max_jobs - self.job_counter
            chunk = ids[at : at + max(want, size)]
            seen, taken = await self._claim(
                keys=[self.queue_name, *(in_progress_key_prefix + job_id for job_id in chunk)],
                args=[timestamp_ms(), life, want, *chunk],
            )
            at += int(seen)
            # A run of ids that all run elsewhere is crossed in ever larger steps.
            size = 8 if taken else min(2 * size, 512)
            for i in range(0, len(taken), 2):
                await self._start(taken[i].decode(), int(float(taken[i + 1])))

    async def _start(self, job_id: str, score: int) -> None:
        """Run a claimed message, as arq's own ``start_jobs`` does after its claim."""
        # Never waits: at most ``want`` were claimed, so a permit is free for each.
        await self.sem.acquire()
        self.job_counter += 1
        self._started += 1
        task = self.loop.create_task(self.run_job(job_id, score))
        task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
        self.tasks[job_id] = task


def arq_worker(settings: dict[str, Any], **overrides: Any) -> Worker:
    """An ``arq.Worker`` for ``settings`` (from :func:`arq_worker_settings`), not yet running.

    For a host that runs the worker on its own event loop
    (``await worker.async_run()``, ``handle_signals=False`` in ``overrides``);
    :func:`run_arq_worker` runs one until SIGTERM. It is arq's ``Worker``
    with a shorter start path: each worker takes a poll's messages in
    its own random order and claims them with one script per round trip
    instead of arq's four sequential round trips for every message tried,
    and polls again at once while it finds work instead of sleeping
    ``poll_delay`` after every poll (with four workers and instant jobs a
    quarter of the Redis requests per job; benchmarks/README.md). ``arq
    module.WorkerSettings`` (arq's own CLI) runs arq's unchanged ``Worker``
    with the same settings, which works the same, with more round trips.
    """
    return _Worker(**{**settings, **overrides})


def run_arq_worker(settings: dict[str, Any]) -> None:
    """Run an arq worker with ``settings`` (from :func:`arq_worker_settings`) until SIGTERM.

    Blocks; handles SIGINT/SIGTERM (stop taking work, let running jobs finish
    for ``shutdown_grace`` s, cancel and hand back the rest). The worker is
    :func:`arq_worker`'s: arq's ``Worker`` with fewer Redis round trips per
    job started and no sleep between polls that find work.
    """
    arq_worker(settings).run()
