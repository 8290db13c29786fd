"""The queue conformance suite, run on the in-process queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from chatsvg_core.engine import Engine
from chatsvg_core.queues import InProcessQueue, JobQueue
from chatsvg_core.testing.conformance import QueueConformance


class TestInProcessQueue(QueueConformance):
    @asynccontextmanager
    async def open_queue(self) -> AsyncIterator[JobQueue]:
        yield InProcessQueue(concurrency=16)

    @asynccontextmanager
    async def run_worker(self, queue: JobQueue, engine: Engine) -> AsyncIterator[None]:
        assert isinstance(queue, InProcessQueue)
        server = asyncio.create_task(queue.serve(lambda job_id: engine.process(job_id, "w")))
        try:
            yield
        finally:
            await queue.stop(grace=0.5)
            await server
