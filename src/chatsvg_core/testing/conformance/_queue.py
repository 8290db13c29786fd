"""The queue contract as a test suite a host runs against its own adapter.

A queue adapter is a doorbell (see :class:`~chatsvg_core.queues.JobQueue`):
the store decides what runs, the queue only says "job X may be due now". The
suite drives a real :class:`~chatsvg_core.engine.Engine` through the adapter
and checks what the engine relies on: every announced job is delivered at
least once, never before its delay; a duplicate announcement (or a late one)
costs nothing but a no-op claim; an announcement of a later attempt made while
the earlier delivery is still running is not swallowed; a job whose message
was lost is found by ``Engine.sweep``, one whose worker died by
``Engine.recover``; and stopping a worker hands its running jobs back.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import ClassVar, TypeVar

from anyio.from_thread import BlockingPortal

from chatsvg_core.engine import Engine, SyncEngine
from chatsvg_core.errors import ProviderPermanentError, ProviderTransientError
from chatsvg_core.generate import GenerationRequest, ProviderOutput
from chatsvg_core.jobs import Job, JobStatus
from chatsvg_core.ledger import Ledger
from chatsvg_core.queues import JobQueue
from chatsvg_core.retry import Jitter, RetryPolicy
from chatsvg_core.storage import EntryKind, MemoryStore, Store, claim_job
from chatsvg_core.testing.conformance._ledger import check_ledger_invariants

__all__ = ["QueueConformance", "QueueProbe"]

T = TypeVar("T")

OWNER = "queue-suite"

SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10">'
    '<circle cx="5" cy="5" r="4" fill="red"/></svg>'
)


@dataclass
class QueueProbe:
    """What the suite saw: every delivery (job id, monotonic time) and every model call."""

    deliveries: list[tuple[str, float]] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    peak_in_flight: int = 0
    started: dict[str, asyncio.Event] = field(default_factory=dict)

    def delivered(self, job_id: str) -> list[float]:
        """Monotonic times at which ``job_id`` reached ``Engine.process``."""
        return [t for j, t in self.deliveries if j == job_id]

    def started_event(self, prompt: str) -> asyncio.Event:
        """Set when the provider is first called for ``prompt``."""
        return self.started.setdefault(prompt, asyncio.Event())


class _ProbeEngine(Engine):
    """An engine that notes each delivery before processing it."""

    probe: QueueProbe

    async def process(self, job_id: str, worker_id: str) -> Job | None:
        self.probe.deliveries.append((job_id, time.monotonic()))
        return await super().process(job_id, worker_id)


class _SuiteProvider:
    """Answers by the prompt's first word: ``ok``, ``slow``, ``flaky``, ``hang``, ``bad``.

    ``flaky`` fails transiently on its first call and succeeds after; ``hang``
    waits until cancelled; ``slow`` takes ``slow_seconds``; ``bad`` fails
    permanently.
    """

    name = "queue-suite"

    def __init__(self, probe: QueueProbe, slow_seconds: float) -> None:
        self.probe = probe
        self.slow_seconds = slow_seconds
        self.override: dict[str, str] = {}  # prompt -> kind, to change a job's fate mid-test

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        prompt = request.prompt
        kind = self.override.get(prompt, prompt.split()[0])
        self.probe.calls[prompt] += 1
        self.probe.started_event(prompt).set()
        self.probe.in_flight += 1
        self.probe.peak_in_flight = max(self.probe.peak_in_flight, self.probe.in_flight)
        try:
            if kind == "flaky" and self.probe.calls[prompt] == 1:
                raise ProviderTransientError("503 once", provider=self.name, status=503)
            if kind == "bad":
                raise ProviderPermanentError("400", provider=self.name, status=400)
            if kind == "hang":
                await asyncio.Event().wait()
            if kind == "slow":
                await asyncio.sleep(self.slow_seconds)
        finally:
            self.probe.in_flight -= 1
        return ProviderOutput(text=SVG, model="suite-1", provider=self.name, latency_s=0.0)


class QueueConformance:
    """The queue adapter contract; subclass it in a ``Test*`` class and say how to run yours.

    Implement :meth:`open_queue` (the enqueueing side, on a fresh, empty
    queue namespace) and :meth:`run_worker` (a worker of your queue engine
    that hands each delivered id to ``engine.process``; leaving the context
    stops it the way a deploy stops it). Optionally override
    :meth:`open_store` (default: a :class:`~chatsvg_core.storage.MemoryStore`,
    enough when the worker runs in the test's process).

    The tests are plain synchronous pytest tests that run their bodies with
    :func:`asyncio.run`, so no pytest plugin is needed. Knobs (class
    attributes): ``delay`` (the delay the delay tests ask for, seconds),
    ``delay_tolerance`` (how early a delivery may come, for engines whose
    clock has millisecond resolution), ``deliver_within`` (seconds a due job
    may wait for delivery), ``min_concurrency`` (jobs one worker must run at
    once), ``jobs`` (jobs in the bulk tests).
    """

    delay: ClassVar[float] = 1.0
    delay_tolerance: ClassVar[float] = 0.01
    deliver_within: ClassVar[float] = 20.0
    min_concurrency: ClassVar[int] = 8
    jobs: ClassVar[int] = 20
    shutdown_within: ClassVar[float] = 30.0

    # --- what a host provides ------------------------------------------------

    def open_queue(self) -> AbstractAsyncContextManager[JobQueue]:
        """Open the enqueueing side of your adapter on a NEW, EMPTY queue namespace.

        Called once per test, inside the test's event loop. Several workers
        started with :meth:`run_worker` during the test must serve this queue.
        """
        raise NotImplementedError("a queue conformance subclass must implement open_queue()")

    def run_worker(self, queue: JobQueue, engine: Engine) -> AbstractAsyncContextManager[None]:
        """Run one worker of ``queue`` whose task body is ``engine.process(job_id, worker_id)``.

        Entering starts it (and returns once it takes deliveries); leaving
        stops it as a deployment would (SIGTERM-like: stop taking work, let
        running jobs finish for a short grace, then cancel them, which hands
        them back through the engine). The suite may run it again later on
        the same queue.
        """
        raise NotImplementedError("a queue conformance subclass must implement run_worker()")

    def sync_engine(self, engine: Engine) -> SyncEngine:
        """``engine`` for a worker of a sync queue engine (Celery, RQ, Dramatiq) run in threads.

        Call it in :meth:`run_worker` when your worker's task body is sync
        code calling a :class:`~chatsvg_core.engine.SyncEngine`: every call
        runs on the suite's own event loop (where ``engine`` and its store
        live), so the worker's threads see the engine the suite checks.
        Start such a worker in a thread and stop it with
        ``asyncio.to_thread`` (the loop must keep running while it stops).
        """
        portal = self._portal
        if portal is None:
            raise RuntimeError("sync_engine() is for use inside a running suite test")
        return SyncEngine(engine, portal=portal)

    _portal: BlockingPortal | None = None

    @asynccontextmanager
    async def open_store(self) -> AsyncIterator[Store]:
        """The store the suite's engine uses (default: a fresh ``MemoryStore``)."""
        store = MemoryStore()
        try:
            yield store
        finally:
            await store.aclose()

    # --- plumbing ------------------------------------------------------------

    def _run(self, body: Callable[[_Harness], Awaitable[T]]) -> T:
        async def main() -> T:
            async with (
                self.open_store() as store,
                self.open_queue() as queue,
            ):
                harness = _Harness(self, store, queue)
                await Ledger(store).grant(OWNER, 1_000_000)
                failed: Exception | None = None
                async with BlockingPortal() as portal:
                    self._portal = portal
                    try:
                        result = await body(harness)
                    except Exception as exc:
                        # Raised past the portal's task group, which would wrap
                        # it in an ExceptionGroup (hosts' tests expect the error).
                        failed = exc
                    finally:
                        self._portal = None
                if failed is not None:
                    raise failed
            return result

        return asyncio.run(main())

    # --- the contract ------------------------------------------------------------

    def test_queue_is_a_job_queue(self) -> None:
        async def body(h: _Harness) -> None:
            assert isinstance(h.queue, JobQueue)

        self._run(body)

    def test_every_announced_job_is_delivered(self) -> None:
        async def body(h: _Harness) -> None:
            async with self.run_worker(h.queue, h.engine):
                ids = [await h.submit(f"ok {i}") for i in range(self.jobs)]
                jobs = await h.wait_terminal(ids)
            assert all(j.status is JobStatus.SUCCEEDED for j in jobs), _statuses(jobs)
            assert all(h.probe.delivered(i) for i in ids)
            await h.check_money()

        self._run(body)

    def test_announcements_wait_for_a_worker(self) -> None:
        async def body(h: _Harness) -> None:
            # Submitted while no worker runs: the queue keeps the messages.
            ids = [await h.submit(f"ok {i}") for i in range(5)]
            await asyncio.sleep(0.2)
            assert not h.probe.deliveries
            async with self.run_worker(h.queue, h.engine):
                jobs = await h.wait_terminal(ids)
            assert all(j.status is JobStatus.SUCCEEDED for j in jobs), _statuses(jobs)

        self._run(body)

    def test_never_delivered_before_its_delay(self) -> None:
        async def body(h: _Harness) -> None:
            rng = random.Random(14)
            async with self.run_worker(h.queue, h.engine):
                asked: dict[str, float] = {}
                ids = []
                for i in range(8):
                    # Created due later, then announced (and announced again) for then.
                    wait = self.delay * rng.choice([0.25, 0.5, 1.0])
                    job_id = await h.submit(f"ok delayed {i}", run_in=wait, announce=False)
                    ids.append(job_id)
                    for _ in range(rng.choice([1, 2])):
                        at = time.monotonic()
                        await h.queue.enqueue(job_id, delay=wait)
                        asked[job_id] = min(asked.get(job_id, at + wait), at + wait)
                now_id = await h.submit("ok now")
                jobs = await h.wait_terminal([*ids, now_id])
            assert all(j.status is JobStatus.SUCCEEDED for j in jobs), _statuses(jobs)
            for job_id, due in asked.items():
                first = min(h.probe.delivered(job_id))
                early = due - first
                assert early <= self.delay_tolerance, f"{job_id} delivered {early:.3f} s early"
            # A delayed message does not hold up one that is due now (announced after
            # them all, it is delivered before the last of them is even due).
            assert min(h.probe.delivered(now_id)) < max(asked.values())

        self._run(body)

    def test_duplicates_are_harmless(self) -> None:
        async def body(h: _Harness) -> None:
            ids = [await h.submit(f"ok dup {i}") for i in range(5)]
            # Announce every job several more times, some at once, some later.
            await asyncio.gather(*(h.queue.enqueue(i) for i in ids for _ in range(3)))
            for job_id in ids:
                await h.queue.enqueue(job_id, delay=0.3)
            async with self.run_worker(h.queue, h.engine):
                jobs = await h.wait_terminal(ids)
                for job_id in ids:  # and again after the end
                    await h.queue.enqueue(job_id)
                await asyncio.sleep(0.6)
            assert all(j.status is JobStatus.SUCCEEDED for j in jobs), _statuses(jobs)
            for j in jobs:
                assert h.probe.calls[str(j.request["prompt"])] == 1, "a duplicate ran the model"
                assert j.attempt == 1
            after = await h.jobs(ids)
            assert [j.version for j in after] == [j.version for j in jobs], "a duplicate wrote"
            await h.check_money(charges=len(ids))

        self._run(body)

    def test_a_later_attempt_is_not_swallowed(self) -> None:
        # The retry is announced while the first delivery is still running:
        # an engine that deduplicates by message id must not drop it.
        async def body(h: _Harness) -> None:
            async with self.run_worker(h.queue, h.engine):
                ids = [await h.submit(f"flaky {i}") for i in range(3)]
                jobs = await h.wait_terminal(ids)
            assert all(j.status is JobStatus.SUCCEEDED for j in jobs), _statuses(jobs)
            assert all(j.attempt == 2 for j in jobs)
            await h.check_money(charges=len(ids))

        self._run(body)

    def test_permanent_failures_are_refunded_once(self) -> None:
        async def body(h: _Harness) -> None:
            async with self.run_worker(h.queue, h.engine):
                ids = [await h.submit(f"bad {i}") for i in range(3)]
                jobs = await h.wait_terminal(ids)
                for job_id in ids:
                    await h.queue.enqueue(job_id)
                await asyncio.sleep(0.3)
            assert all(j.status is JobStatus.FAILED for j in jobs), _statuses(jobs)
            await h.check_money(charges=len(ids), refunds=len(ids))

        self._run(body)

    def test_a_lost_message_is_recovered_by_sweep(self) -> None:
        async def body(h: _Harness) -> None:
            async with self.run_worker(h.queue, h.engine):
                job_id = await h.submit("ok lost", announce=False)  # its message never sent
                await asyncio.sleep(0.3)
                assert not h.probe.delivered(job_id)
                assert await h.engine.sweep() >= 1
                (job,) = await h.wait_terminal([job_id])
            assert job.status is JobStatus.SUCCEEDED

        self._run(body)

    def test_a_dead_workers_job_is_recovered(self) -> None:
        async def body(h: _Harness) -> None:
            job_id = await h.submit("ok orphan", announce=False)
            # A worker claimed it, then died without a word: its lease lapses.
            async with h.store.transaction() as tx:
                await claim_job(
                    tx,
                    job_id,
                    now=h.engine.clock.now(),
                    worker_id="dead",
                    lease=timedelta(seconds=0.05),
                )
            await asyncio.sleep(0.1)
            async with self.run_worker(h.queue, h.engine):
                report = await h.engine.recover()
                assert report.requeued == [job_id]
                (job,) = await h.wait_terminal([job_id])
            assert job.status is JobStatus.SUCCEEDED
            assert job.attempt == 2

        self._run(body)

    def test_one_worker_runs_jobs_concurrently(self) -> None:
        async def body(h: _Harness) -> None:
            n = self.min_concurrency
            async with self.run_worker(h.queue, h.engine):
                ids = [await h.submit(f"slow {i}") for i in range(n)]
                jobs = await h.wait_terminal(ids)
            assert all(j.status is JobStatus.SUCCEEDED for j in jobs), _statuses(jobs)
            assert h.probe.peak_in_flight >= n, (
                f"one worker ran at most {h.probe.peak_in_flight} model calls at once"
            )

        self._run(body)

    def test_shutdown_hands_running_jobs_back(self) -> None:
        async def body(h: _Harness) -> None:
            prompt = "hang at shutdown"
            async with self.run_worker(h.queue, h.engine):
                job_id = await h.submit(prompt)
                await asyncio.wait_for(h.probe.started_event(prompt).wait(), self.deliver_within)
                stopping = time.monotonic()
            took = time.monotonic() - stopping
            assert took <= self.shutdown_within, f"worker took {took:.1f} s to stop"
            (job,) = await h.jobs([job_id])
            # Handed back now, not left RUNNING until its lease lapses.
            assert job.status is JobStatus.QUEUED, job.status
            assert job.attempt == 1
            # The next worker finishes it (the prompt no longer hangs).
            h.provider.override[prompt] = "ok"
            async with self.run_worker(h.queue, h.engine):
                (job,) = await h.wait_terminal([job_id])
            assert job.status is JobStatus.SUCCEEDED
            await h.check_money(charges=1)

        self._run(body)

    def test_two_workers_share_the_work(self) -> None:
        async def body(h: _Harness) -> None:
            async with (
                self.run_worker(h.queue, h.engine),
                self.run_worker(h.queue, h.engine),
            ):
                ids = [await h.submit(f"ok shared {i}") for i in range(self.jobs)]
                jobs = await h.wait_terminal(ids)
            assert all(j.status is JobStatus.SUCCEEDED for j in jobs), _statuses(jobs)
            assert all(h.probe.calls[str(j.request["prompt"])] == 1 for j in jobs)
            await h.check_money(charges=len(ids))

        self._run(body)


class _Harness:
    """One test's store, queue, engine and probe."""

    def __init__(self, suite: QueueConformance, store: Store, queue: JobQueue) -> None:
        self.suite = suite
        self.store = store
        self.queue = queue
        self.probe = QueueProbe()
        self.provider = provider = _SuiteProvider(self.probe, slow_seconds=1.0)
        policy = RetryPolicy(
            max_attempts=3, initial_delay=0.2, max_delay=0.4, jitter=Jitter.NONE, deadline=None
        )
        engine = _ProbeEngine(
            store,
            queue,
            provider,
            policy=policy,
            call_policy=policy.model_copy(update={"max_attempts": 1}),
            lease=timedelta(seconds=60),
        )
        engine.probe = self.probe
        self.engine: Engine = engine
        self._seq = 0

    async def submit(self, prompt: str, *, run_in: float = 0.0, announce: bool = True) -> str:
        """Submit a job; ``announce=False`` writes it without a message (a lost one)."""
        self._seq += 1
        if announce and not run_in:
            return (await self.engine.submit(OWNER, f"k{self._seq}", {"prompt": prompt})).job.id
        silent = Engine(self.store, None, self.engine.provider, policy=self.engine.policy)
        job = (await silent.submit(OWNER, f"k{self._seq}", {"prompt": prompt})).job
        if run_in:
            async with self.store.transaction() as tx:
                current = await tx.get_job(job.id, for_update=True)
                assert current is not None
                later = current.model_copy(
                    update={
                        "run_at": current.run_at + timedelta(seconds=run_in),
                        "version": current.version + 1,
                    }
                )
                assert await tx.update_job(later, expected_version=current.version)
        return job.id

    async def jobs(self, ids: Sequence[str]) -> list[Job]:
        async with self.store.transaction() as tx:
            found = [await tx.get_job(i) for i in ids]
        assert all(j is not None for j in found)
        return [j for j in found if j is not None]

    async def wait_terminal(self, ids: Sequence[str]) -> list[Job]:
        deadline = time.monotonic() + self.suite.deliver_within + 3 * self.suite.delay
        while True:
            jobs = await self.jobs(ids)
            if all(j.terminal for j in jobs):
                return jobs
            if time.monotonic() > deadline:
                raise AssertionError(f"jobs not finished in time: {_statuses(jobs)}")
            await asyncio.sleep(0.02)

    async def check_money(self, *, charges: int | None = None, refunds: int = 0) -> None:
        async with self.store.transaction() as tx:
            entries = await check_ledger_invariants(tx, (OWNER,))
        kinds = Counter(e.kind for e in entries)
        if charges is not None:
            assert kinds[EntryKind.CHARGE] == charges, kinds
        assert kinds[EntryKind.REFUND] == refunds, kinds


def _statuses(jobs: Sequence[Job]) -> dict[str, int]:
    return dict(Counter(j.status.value for j in jobs))
