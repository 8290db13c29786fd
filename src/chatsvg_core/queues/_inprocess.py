"""The embedded default queue: an asyncio worker pool inside the host process."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
from collections.abc import Awaitable, Callable

__all__ = ["InProcessQueue"]

log = logging.getLogger("chatsvg_core.queue")

Handler = Callable[[str], Awaitable[object]]


class InProcessQueue:
    """An in-memory delay queue served by ``concurrency`` asyncio workers.

    Enqueued ids wait in a heap until due, then go to the first free worker,
    which awaits ``handler(job_id)``. Nothing survives the process: that is
    fine, because the store keeps every job and ``Engine.sweep`` re-enqueues
    due jobs after a restart.

    ``enqueue`` may be called from any task on the queue's event loop, before
    or during :meth:`serve`.

    Shutdown (:meth:`stop`) stops handing out work, lets running handlers
    finish for up to ``grace`` seconds, then cancels the rest; a cancelled
    handler's job keeps its lease until it lapses and recovery re-queues it
    (the engine releases it on cancellation where it can).
    """

    def __init__(self, *, concurrency: int = 4) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self._heap: list[tuple[float, int, str]] = []
        self._pending: dict[str, float] = {}
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._stopping = False
        self._running: set[asyncio.Task[object]] = set()

    def __len__(self) -> int:
        """Ids waiting (due or not), not counting those being handled."""
        return len(self._pending)

    async def enqueue(self, job_id: str, *, delay: float = 0.0, attempt: int = 0) -> None:
        """Schedule ``job_id`` for ``delay`` seconds from now (non-finite delays are refused).

        ``attempt`` is not needed here: one pending entry per id is kept, at
        its earliest due time, and an id being handled is not pending.
        """
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(f"delay must be a finite number of seconds >= 0, not {delay!r}")
        due = asyncio.get_running_loop().time() + delay
        if job_id in self._pending and self._pending[job_id] <= due:
            return  # already announced for no later than this
        self._pending[job_id] = due
        heapq.heappush(self._heap, (due, next(self._seq), job_id))
        self._wake.set()

    async def serve(self, handler: Handler, *, until_idle: bool = False) -> None:
        """Run workers until :meth:`stop`, or (``until_idle``) until nothing is left.

        Handler exceptions are logged and do not stop the pool: the engine
        already turned every expected failure into a job transition. After
        :meth:`stop`, ``serve`` may be called again: ids announced meanwhile
        (a job handed back at shutdown, say) are still waiting.
        """
        self._stopping = False
        slots = asyncio.Semaphore(self.concurrency)
        loop = asyncio.get_running_loop()
        try:
            while not self._stopping:
                if until_idle and not self._pending and not self._running:
                    return
                if not self._heap:
                    self._wake.clear()
                    await self._wait_for_change(None)
                    continue
                due, _, job_id = self._heap[0]
                wait = due - loop.time()
                if wait > 0:
                    self._wake.clear()
                    await self._wait_for_change(wait)
                    continue
                await slots.acquire()
                if self._stopping:
                    slots.release()
                    break
                if not self._heap or self._heap[0][2] != job_id:
                    slots.release()  # another serve() loop on this queue took it meanwhile
                    continue
                heapq.heappop(self._heap)
                if self._pending.get(job_id) != due:
                    slots.release()  # superseded by an earlier announcement
                    continue
                del self._pending[job_id]
                task = asyncio.create_task(self._run(handler, job_id, slots))
                self._running.add(task)
                task.add_done_callback(self._finished)
        finally:
            if self._running:
                await asyncio.gather(*self._running, return_exceptions=True)

    async def _wait_for_change(self, seconds: float | None) -> None:
        # Woken by enqueue, a finished handler or stop; or when the head is due.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _run(self, handler: Handler, job_id: str, slots: asyncio.Semaphore) -> object:
        try:
            return await handler(job_id)
        except asyncio.CancelledError:
            log.warning(
                "The handler of job %s was cancelled by shutdown.",
                job_id,
                extra={"chatsvg_event": "handler_cancelled", "job_id": job_id},
            )
            raise
        except Exception:
            log.exception(
                "The handler of job %s raised; the queue goes on.",
                job_id,
                extra={"chatsvg_event": "handler_raised", "job_id": job_id},
            )
            return None
        finally:
            slots.release()

    def _finished(self, task: asyncio.Task[object]) -> None:
        self._running.discard(task)
        self._wake.set()

    async def stop(self, *, grace: float = 30.0) -> None:
        """Stop handing out work; wait up to ``grace`` s for running handlers, then cancel them."""
        self._stopping = True
        self._wake.set()
        running = list(self._running)
        if not running:
            return
        _, pending = await asyncio.wait(running, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
