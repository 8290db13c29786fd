"""The arq adapter: the queue conformance suite on a real Redis, and arq's traps."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import uuid4

import pytest

from chatsvg_core.engine import Engine
from chatsvg_core.queues import ArqQueue, JobQueue, arq_worker_settings
from chatsvg_core.queues._arq import PROCESS_TASK
from chatsvg_core.testing.conformance import QueueConformance

from ._support import delete_keys, redis_db, running_arq_worker

pytestmark = pytest.mark.redis


class TestArqQueue(QueueConformance):
    url: str

    @pytest.fixture(autouse=True)
    def _redis(self, redis_url: str) -> None:
        self.url = redis_db(redis_url)

    @asynccontextmanager
    async def open_queue(self) -> AsyncIterator[JobQueue]:
        queue = await ArqQueue.connect(self.url, queue_name=f"chatsvg-test-{uuid4().hex[:12]}")
        try:
            yield queue
        finally:
            await queue.aclose()
            await delete_keys(self.url, f"*{queue.queue_name}*")

    @asynccontextmanager
    async def run_worker(self, queue: JobQueue, engine: Engine) -> AsyncIterator[None]:
        assert isinstance(queue, ArqQueue)

        async def same_engine(_: ArqQueue) -> Engine:
            return engine

        settings = arq_worker_settings(
            same_engine,
            redis_url=self.url,
            queue_name=queue.queue_name,
            max_jobs=64,
            poll_delay=0.05,
            close_engine=False,
            cron_jobs=[],  # the suite calls recover() and sweep() itself
        )
        async with running_arq_worker(settings, grace=0.5):
            yield


class _AttemptBlindQueue(ArqQueue):
    """The naive adapter: one arq job id per chatsvg job, straight to enqueue_job."""

    async def enqueue(self, job_id: str, *, delay: float = 0.0, attempt: int = 0) -> None:
        await self.redis.enqueue_job(
            PROCESS_TASK,
            job_id,
            _job_id=f"{self.queue_name}:{job_id}",
            _queue_name=self.queue_name,
            _defer_by=delay or None,
        )


class _AttemptBlind(TestArqQueue):
    @asynccontextmanager
    async def open_queue(self) -> AsyncIterator[JobQueue]:
        async with super().open_queue() as queue:
            assert isinstance(queue, ArqQueue)
            blind = _AttemptBlindQueue(queue.redis, queue_name=queue.queue_name)
            yield blind


def test_an_id_per_job_loses_retries_on_real_arq(redis_url: str) -> None:
    # The trap the attempt in the message id avoids: arq drops the retry's
    # announcement because the failing delivery still holds the id.
    suite = _AttemptBlind()
    suite.url = redis_db(redis_url)
    suite.deliver_within = 3.0
    with pytest.raises(AssertionError, match="not finished"):
        suite.test_a_later_attempt_is_not_swallowed()


async def test_a_delay_over_the_cap_is_left_to_the_sweep(redis_url: str) -> None:
    url = redis_db(redis_url)
    queue = await ArqQueue.connect(url, queue_name=f"chatsvg-test-{uuid4().hex[:12]}", max_delay=60)
    try:
        await queue.enqueue("far", delay=61)
        await queue.enqueue("near", delay=59)
        waiting = await queue.redis.zrange(queue.queue_name, 0, -1)
        assert waiting == [queue.message_id("near", 0).encode()]
        # Announcing again is a no-op while the first announcement waits.
        await queue.enqueue("near", delay=1)
        assert await queue.redis.zcard(queue.queue_name) == 1
        # A later attempt is a new message.
        await queue.enqueue("near", delay=1, attempt=1)
        assert await queue.redis.zcard(queue.queue_name) == 2
    finally:
        await queue.aclose()
        await delete_keys(url, f"*{queue.queue_name}*")


async def test_an_unreachable_redis_loses_the_message_not_the_submit() -> None:
    from arq.connections import ArqRedis

    # A pool on a port nothing listens on: enqueue logs and returns.
    dead = ArqRedis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    try:
        await ArqQueue(dead).enqueue("j")
    finally:
        await dead.aclose()


async def test_bad_delays_are_refused(redis_url: str) -> None:
    queue = await ArqQueue.connect(redis_db(redis_url))
    try:
        for delay in (-1.0, float("nan"), float("inf")):
            with pytest.raises(ValueError, match="delay"):
                await queue.enqueue("j", delay=delay)
    finally:
        await queue.aclose()


def test_settings_are_explicit_and_checked() -> None:
    async def factory(_: ArqQueue) -> Engine:
        raise AssertionError("not called")

    s = arq_worker_settings(factory, maintain_every=15)
    assert (s["max_jobs"], s["job_timeout"], s["keep_result"]) == (500, 600.0, 0)
    (maintain,) = s["cron_jobs"]
    assert maintain.second == {0, 15, 30, 45}
    assert arq_worker_settings(factory, maintain_every=300)["cron_jobs"][0].minute == set(
        range(0, 60, 5)
    )
    with pytest.raises(ValueError, match="maintain_every"):
        arq_worker_settings(factory, maintain_every=7)
    # None: the host runs recover/sweep elsewhere (one process, its own scheduler).
    assert arq_worker_settings(factory, maintain_every=None)["cron_jobs"] == []
    with pytest.raises(ValueError, match="max_jobs"):
        arq_worker_settings(factory, max_jobs=0)


def test_importing_the_library_does_not_import_arq() -> None:
    import subprocess
    import sys

    code = "import sys, chatsvg_core, chatsvg_core.queues; print('arq' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_a_dead_workers_message_does_not_hold_up_recovery(redis_url: str) -> None:
    # arq re-runs a dead worker's message only when its in-progress key lapses
    # (job_timeout + 10 s); recovery announces the next attempt under a new id.
    from datetime import timedelta

    from chatsvg_core.generate import OfflineSketchProvider
    from chatsvg_core.jobs import JobStatus
    from chatsvg_core.ledger import Ledger
    from chatsvg_core.storage import MemoryStore, claim_job

    url = redis_db(redis_url)
    queue = await ArqQueue.connect(url, queue_name=f"chatsvg-test-{uuid4().hex[:12]}")
    store = MemoryStore()
    engine = Engine(store, queue, OfflineSketchProvider())
    await Ledger(store).grant("o", 100)
    try:
        job = (await engine.submit("o", "k", {"prompt": "a kite"})).job
        # A worker took message <job>:0 and died holding it, and the job's lease.
        await queue.redis.psetex(f"arq:in-progress:{queue.message_id(job.id, 0)}", 600_000, b"1")
        async with store.transaction() as tx:
            now = engine.clock.now()
            await claim_job(tx, job.id, now=now, worker_id="dead", lease=timedelta(seconds=0.05))
        await asyncio.sleep(0.1)

        async def same_engine(_: ArqQueue) -> Engine:
            return engine

        settings = arq_worker_settings(
            same_engine,
            redis_url=url,
            queue_name=queue.queue_name,
            poll_delay=0.05,
            close_engine=False,
            cron_jobs=[],
        )
        async with running_arq_worker(settings):
            assert (await engine.recover()).requeued == [job.id]
            for _ in range(250):
                if (await engine.get(job.id)).terminal:
                    break
                await asyncio.sleep(0.02)
        done = await engine.get(job.id)
        assert done.status is JobStatus.SUCCEEDED
        assert done.attempt == 2
    finally:
        await queue.aclose()
        await delete_keys(url, f"*{queue.queue_name}*")


async def test_the_cron_job_recovers_and_sweeps(redis_url: str) -> None:
    from chatsvg_core.generate import OfflineSketchProvider
    from chatsvg_core.jobs import JobStatus
    from chatsvg_core.ledger import Ledger
    from chatsvg_core.storage import MemoryStore

    url = redis_db(redis_url)
    queue = await ArqQueue.connect(url, queue_name=f"chatsvg-test-{uuid4().hex[:12]}")
    store = MemoryStore()
    await Ledger(store).grant("o", 100)
    # Submitted with no queue: its message is lost from the start.
    job = (await Engine(store, None, OfflineSketchProvider()).submit("o", "k", {"prompt": "x"})).job
    engine = Engine(store, queue, OfflineSketchProvider())

    async def same_engine(_: ArqQueue) -> Engine:
        return engine

    settings = arq_worker_settings(
        same_engine,
        redis_url=url,
        queue_name=queue.queue_name,
        poll_delay=0.05,
        close_engine=False,
        maintain_every=1,
    )
    try:
        async with running_arq_worker(settings):
            for _ in range(200):
                if (await engine.get(job.id)).terminal:
                    break
                await asyncio.sleep(0.05)
        assert (await engine.get(job.id)).status is JobStatus.SUCCEEDED
    finally:
        await queue.aclose()
        await delete_keys(url, f"*{queue.queue_name}*")


async def test_a_poll_claims_only_the_messages_still_waiting(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The adapter's worker claims a poll's waiting messages in one script per round trip.

    arq's ``Worker.start_jobs`` spends four sequential round trips on every
    id it is given, including those running (anywhere), gone or not yet due;
    the adapter's worker claims only the ones still waiting, never more than
    its free slots, and sets each one's in-progress key as arq's claim does.
    """
    from arq.constants import in_progress_key_prefix
    from arq.worker import Worker

    from chatsvg_core.queues import arq_worker

    url = redis_db(redis_url)
    queue = await ArqQueue.connect(url, queue_name=f"chatsvg-test-{uuid4().hex[:12]}")
    started: list[str] = []
    running = [0, 0]  # now, most at once

    async def run_job(self: Worker, job_id: str, score: int) -> None:
        started.append(job_id)
        running[0] += 1
        running[1] = max(running)
        await asyncio.sleep(0.01)
        running[0] -= 1

    async def arq_start(self: Worker, job_ids: list[bytes]) -> None:
        raise AssertionError("arq's own start path is not used")

    monkeypatch.setattr(Worker, "run_job", run_job)
    monkeypatch.setattr(Worker, "start_jobs", arq_start)

    async def factory(_: ArqQueue) -> Engine:
        raise AssertionError("not called")

    worker = arq_worker(
        arq_worker_settings(factory, redis_url=url, queue_name=queue.queue_name, max_jobs=3),
        handle_signals=False,
    )
    try:
        worker._pool = queue.redis
        for i in range(8):
            await queue.enqueue(f"running-{i}")
        for i in range(8):  # taken by some worker: their ids stay in the queue while they run
            await queue.redis.psetex(
                f"{in_progress_key_prefix}{queue.message_id(f'running-{i}', 0)}", 60_000, b"1"
            )
        await queue.enqueue("later", delay=60)
        for i in range(5):
            await queue.enqueue(f"waiting-{i}")
        # One this worker runs itself: skipped without asking Redis.
        await queue.enqueue("mine")
        running_here = asyncio.get_running_loop().create_future()
        worker.tasks[queue.message_id("mine", 0)] = running_here  # type: ignore[assignment]
        ids = await queue.redis.zrange(queue.queue_name, 0, -1)
        ids.append(queue.message_id("finished", 0).encode())  # ended since the poll read it
        await worker.start_jobs(ids)
        running_here.cancel()
        await asyncio.gather(*(t for t in worker.tasks.values() if t is not running_here))
        assert sorted(started) == sorted(queue.message_id(f"waiting-{i}", 0) for i in range(5))
        assert running[1] <= 3  # never more than max_jobs at once
        assert worker.job_counter == 0
        for job_id in started:  # claimed as arq claims: its in-progress key, for job_timeout + 10 s
            ttl = await queue.redis.pttl(in_progress_key_prefix + job_id)
            assert 600_000 < ttl <= 610_000, ttl
        later = queue.message_id("later", 0)
        assert not await queue.redis.exists(in_progress_key_prefix + later)
    finally:
        worker._pool = None
        await queue.aclose()
        await delete_keys(url, f"*{queue.queue_name}*")


async def _instant(ctx: dict[str, Any], job_id: str) -> None:
    ctx["done"].append(time.monotonic())
    if len(ctx["done"]) >= ctx["want"][0]:
        ctx["enough"].set()


async def _until(enough: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(enough.wait(), seconds)
    enough.clear()


@pytest.mark.parametrize("adapter", [True, False], ids=["adapter-worker", "arq-worker"])
async def test_a_worker_polls_again_at_once_while_it_finds_work(
    redis_url: str, adapter: bool
) -> None:
    """A poll that started jobs is followed by the next at once, not after ``poll_delay``.

    arq reads at most ``queue_read_limit`` messages a poll (100 here) and then
    waits out ``poll_delay`` (5 s here): 300 instant jobs take arq's own
    worker three polls, over 10 s. The adapter's worker reads again as soon
    as a slot is free, and an idle one reads an empty queue every
    ``EMPTY_POLL`` s, so a job submitted to it starts at once.
    """
    from arq import func
    from arq.worker import Worker

    from chatsvg_core.queues import arq_worker
    from chatsvg_core.queues._arq import EMPTY_POLL

    url = redis_db(redis_url)
    queue = await ArqQueue.connect(url, queue_name=f"chatsvg-test-{uuid4().hex[:12]}")
    done: list[float] = []
    want = [1]
    enough = asyncio.Event()
    settings = {
        "functions": [func(_instant, name=PROCESS_TASK, keep_result=0)],
        "redis_pool": queue.redis,
        "queue_name": queue.queue_name,
        "max_jobs": 10,
        "poll_delay": 5.0,
        "keep_result": 0,
        "ctx": {"done": done, "want": want, "enough": enough},
        "handle_signals": False,
    }
    worker = arq_worker(settings) if adapter else Worker(**settings)
    task = asyncio.create_task(worker.async_run())
    try:
        await asyncio.sleep(0.3)  # the first poll found nothing: the worker is idle
        start = time.monotonic()
        await queue.enqueue("first")
        await _until(enough, 6)
        picked_up = done[0] - start
        start = time.monotonic()
        want[0] = 301
        await asyncio.gather(*(queue.enqueue(f"j{i}") for i in range(300)))
        await _until(enough, 20)
        drained = time.monotonic() - start
        if adapter:
            assert picked_up < EMPTY_POLL + 0.5, picked_up
            assert drained < 4, drained
        else:  # what the adapter's worker saves
            assert picked_up > 1 or drained > 9, (picked_up, drained)
    finally:
        worker.handle_sig(signal.SIGTERM)
        await asyncio.gather(task, return_exceptions=True)
        await queue.aclose()
        await delete_keys(url, f"*{queue.queue_name}*")


async def _long(ctx: dict[str, Any], job_id: str) -> None:
    await asyncio.sleep(3)


async def test_a_full_worker_still_beats_and_schedules_its_cron(redis_url: str) -> None:
    """A worker whose every slot holds a long call still runs its heartbeat every poll_delay.

    arq's loop records health and enqueues cron jobs (the recovery) once per
    poll; the adapter's worker waits for a free slot to start more, but never
    longer than ``poll_delay``, or a worker full of 10-120 s calls would
    schedule no recovery until one ended.
    """
    from arq import func

    from chatsvg_core.queues import arq_worker

    url = redis_db(redis_url)
    queue = await ArqQueue.connect(url, queue_name=f"chatsvg-test-{uuid4().hex[:12]}")
    worker = arq_worker(
        {
            "functions": [func(_long, name=PROCESS_TASK, keep_result=0)],
            "redis_pool": queue.redis,
            "queue_name": queue.queue_name,
            "max_jobs": 2,
            "poll_delay": 0.2,
            "keep_result": 0,
            "handle_signals": False,
        }
    )
    beats: list[float] = []
    beat = worker.heart_beat

    async def counted() -> None:
        beats.append(time.monotonic())
        await beat()

    worker.heart_beat = counted  # type: ignore[method-assign]
    for i in range(4):
        await queue.enqueue(f"j{i}")
    task = asyncio.create_task(worker.async_run())
    try:
        await asyncio.sleep(0.5)
        assert worker.job_counter == 2  # full: two calls of 3 s
        start = time.monotonic()
        await asyncio.sleep(1.5)
        during = [b for b in beats if b >= start]
        assert len(during) >= 4, during  # at least one per poll_delay (0.2 s)
    finally:
        worker.handle_sig(signal.SIGTERM)
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
        await queue.aclose()
        await delete_keys(url, f"*{queue.queue_name}*")
