"""The queue suite fails on queues that break its promises (so a pass means something)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from chatsvg_core.engine import Engine
from chatsvg_core.queues import InProcessQueue, JobQueue
from chatsvg_core.testing.conformance import QueueConformance


class _Suite(QueueConformance):
    # Short waits: each broken queue fails by running out of them.
    deliver_within = 2.0
    delay = 0.3
    concurrency = 16

    def make_queue(self) -> InProcessQueue:
        return InProcessQueue(concurrency=self.concurrency)

    @asynccontextmanager
    async def open_queue(self) -> AsyncIterator[JobQueue]:
        yield self.make_queue()

    @asynccontextmanager
    async def run_worker(self, queue: JobQueue, engine: Engine) -> AsyncIterator[None]:
        assert isinstance(queue, InProcessQueue)
        server = asyncio.create_task(queue.serve(lambda job_id: engine.process(job_id, "w")))
        try:
            yield
        finally:
            await queue.stop(grace=0.2)
            await server


class _EarlyQueue(InProcessQueue):
    async def enqueue(self, job_id: str, *, delay: float = 0.0, attempt: int = 0) -> None:
        await super().enqueue(job_id)  # ignores the delay


class _RemembersIdsQueue(InProcessQueue):
    """Drops any id it has seen, as arq does with a reused message id."""

    seen: set[str]

    async def enqueue(self, job_id: str, *, delay: float = 0.0, attempt: int = 0) -> None:
        if job_id in self.seen:
            return
        self.seen.add(job_id)
        await super().enqueue(job_id, delay=delay)


class _LossyQueue(InProcessQueue):
    n = 0

    async def enqueue(self, job_id: str, *, delay: float = 0.0, attempt: int = 0) -> None:
        self.n += 1
        if self.n % 2:
            await super().enqueue(job_id, delay=delay)


def _remembers() -> InProcessQueue:
    queue = _RemembersIdsQueue(concurrency=16)
    queue.seen = set()
    return queue


class _AbandonsOnStop(_Suite):
    """Stops by walking away from running handlers: their jobs stay RUNNING."""

    @asynccontextmanager
    async def run_worker(self, queue: JobQueue, engine: Engine) -> AsyncIterator[None]:
        assert isinstance(queue, InProcessQueue)
        queue._stopping = False
        server = asyncio.create_task(queue.serve(lambda job_id: engine.process(job_id, "w")))
        try:
            yield
        finally:
            queue._stopping = True
            queue._running.clear()
            queue._wake.set()
            await server


@pytest.mark.parametrize(
    ("make", "test"),
    [
        (lambda: _EarlyQueue(concurrency=16), "test_never_delivered_before_its_delay"),
        (_remembers, "test_a_later_attempt_is_not_swallowed"),
        (lambda: _LossyQueue(concurrency=16), "test_every_announced_job_is_delivered"),
        (lambda: InProcessQueue(concurrency=1), "test_one_worker_runs_jobs_concurrently"),
    ],
    ids=["early", "remembers-ids", "lossy", "serial"],
)
def test_suite_catches_a_broken_queue(make: object, test: str) -> None:
    suite = _Suite()
    suite.make_queue = make  # type: ignore[method-assign]
    with pytest.raises(AssertionError):
        getattr(suite, test)()


def test_suite_catches_a_worker_that_abandons_jobs_on_stop() -> None:
    with pytest.raises((AssertionError, TimeoutError)):
        _AbandonsOnStop().test_shutdown_hands_running_jobs_back()
