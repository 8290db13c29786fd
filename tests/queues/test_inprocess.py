"""The in-process queue: delays honoured, concurrency bounded, graceful stop."""

from __future__ import annotations

import asyncio

import pytest

from chatsvg_core.queues import InProcessQueue, JobQueue


def test_is_a_job_queue() -> None:
    assert isinstance(InProcessQueue(), JobQueue)


async def test_runs_in_due_order_and_drains() -> None:
    queue = InProcessQueue(concurrency=1)
    seen: list[str] = []

    async def handle(job_id: str) -> None:
        seen.append(job_id)

    await queue.enqueue("late", delay=0.05)
    await queue.enqueue("now")
    await queue.enqueue("soon", delay=0.01)
    await asyncio.wait_for(queue.serve(handle, until_idle=True), 5)
    assert seen == ["now", "soon", "late"]


async def test_delay_is_not_shortened() -> None:
    queue = InProcessQueue()
    loop = asyncio.get_running_loop()
    start = loop.time()
    ran_at: list[float] = []

    async def handle(job_id: str) -> None:
        ran_at.append(loop.time())

    await queue.enqueue("j", delay=0.05)
    await asyncio.wait_for(queue.serve(handle, until_idle=True), 5)
    assert ran_at[0] - start >= 0.05


async def test_concurrency_is_bounded() -> None:
    queue = InProcessQueue(concurrency=3)
    active = peak = 0

    async def handle(job_id: str) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1

    for i in range(20):
        await queue.enqueue(f"j{i}")
    await asyncio.wait_for(queue.serve(handle, until_idle=True), 5)
    assert peak == 3


async def test_handler_errors_do_not_stop_the_pool(caplog: pytest.LogCaptureFixture) -> None:
    queue = InProcessQueue(concurrency=2)
    done: list[str] = []

    async def handle(job_id: str) -> None:
        if job_id == "bad":
            raise RuntimeError("boom")
        done.append(job_id)

    for job_id in ("a", "bad", "b"):
        await queue.enqueue(job_id)
    await asyncio.wait_for(queue.serve(handle, until_idle=True), 5)
    assert sorted(done) == ["a", "b"]
    assert "raised; the queue goes on" in caplog.text


async def test_stop_lets_running_finish_within_grace_then_cancels() -> None:
    queue = InProcessQueue(concurrency=2)
    finished: list[str] = []
    cancelled: list[str] = []
    started = asyncio.Event()

    async def handle(job_id: str) -> None:
        started.set()
        try:
            await asyncio.sleep(0.02 if job_id == "quick" else 10)
            finished.append(job_id)
        except asyncio.CancelledError:
            cancelled.append(job_id)
            raise

    await queue.enqueue("quick")
    await queue.enqueue("slow")
    await queue.enqueue("never", delay=60)
    server = asyncio.create_task(queue.serve(handle))
    await started.wait()
    await queue.stop(grace=0.2)
    await asyncio.wait_for(server, 5)
    assert finished == ["quick"]
    assert cancelled == ["slow"]
    assert len(queue) == 1  # the delayed one was never handed out


async def test_bad_delays_are_refused() -> None:
    queue = InProcessQueue()
    for delay in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="delay"):
            await queue.enqueue("j", delay=delay)


async def test_repeated_announcements_run_once_at_the_earliest_time() -> None:
    queue = InProcessQueue(concurrency=1)
    seen: list[str] = []

    async def handle(job_id: str) -> None:
        seen.append(job_id)

    await queue.enqueue("j", delay=0.05)
    await queue.enqueue("j", delay=0.5)  # later: ignored
    await queue.enqueue("j")  # earlier: replaces
    assert len(queue) == 1
    await asyncio.wait_for(queue.serve(handle, until_idle=True), 5)
    assert seen == ["j"]
