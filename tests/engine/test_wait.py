"""Waiting for a job without busy polling: a feed on PostgreSQL, a backoff poll elsewhere."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from chatsvg_core import errors
from chatsvg_core.engine import Engine, JobChangeFeed, JobUpdate, SyncEngine
from chatsvg_core.jobs import JobStatus
from chatsvg_core.ledger import Ledger
from chatsvg_core.retry import Jitter, RetryPolicy
from chatsvg_core.storage import Store
from chatsvg_core.storage.memory import MemoryStore

from ._support import ScriptedProvider

POLICY = RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=0.1, jitter=Jitter.NONE)


class CountingStore:
    """A store that counts transactions (how often a waiter reads)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.transactions = 0

    def transaction(self) -> Any:
        self.transactions += 1
        return self.inner.transaction()

    async def aclose(self) -> None:
        await self.inner.aclose()


class CountingFeedStore(CountingStore):
    """The same, passing the inner store's change feed through."""

    def subscribe(self, job_id: str) -> Any:
        return self.inner.subscribe(job_id)  # type: ignore[attr-defined]


def make(store: Store, script: list[str] | None = None, **kw: Any) -> Engine:
    return Engine(
        store,
        None,
        ScriptedProvider(script or []),
        policy=POLICY,
        call_policy=POLICY.model_copy(update={"max_attempts": 1}),
        heartbeat_every=3600,
        **kw,
    )


async def run_later(engine: Engine, job_id: str, after: float, times: int = 1) -> None:
    await asyncio.sleep(after)
    for _ in range(times):
        await engine.process(job_id, "w")
        await asyncio.sleep(0.15)


async def test_wait_returns_when_the_job_ends_and_polls_with_a_backoff() -> None:
    counted = CountingStore(MemoryStore())
    engine = make(counted)  # type: ignore[arg-type]
    await Ledger(counted.inner).grant("alice", 10)
    sub = await engine.submit("alice", None, {"prompt": "a red circle"})
    worker = asyncio.create_task(run_later(engine, sub.job.id, after=3.0))
    before = counted.transactions
    started = time.monotonic()
    job = await engine.wait(sub.job.id, timeout=10)
    waited = time.monotonic() - started
    await worker
    assert job.status is JobStatus.SUCCEEDED
    assert 3.0 <= waited < 5.5
    # 50 ms growing by 1.6x up to 2 s: about 9 reads in 3 s, not hundreds.
    reads = counted.transactions - before - 4  # the worker's own transactions
    assert reads <= 12, f"{reads} reads while waiting 3 s: a busy poll"


async def test_wait_times_out_with_the_job_as_it_stands() -> None:
    engine = make(MemoryStore())
    sub = await engine.submit("alice", None, {"prompt": "a red circle"})
    started = time.monotonic()
    job = await engine.wait(sub.job.id, timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 1.5
    assert job.status is JobStatus.QUEUED and not job.terminal
    assert (await engine.wait(sub.job.id, timeout=0)).status is JobStatus.QUEUED


async def test_wait_refuses_bad_arguments_and_other_owners() -> None:
    engine = make(MemoryStore())
    sub = await engine.submit("alice", None, {"prompt": "a red circle"})
    with pytest.raises(errors.JobNotFound):
        await engine.wait("nope", timeout=0)
    with pytest.raises(errors.JobNotFound):
        await engine.wait(sub.job.id, timeout=0, owner="mallory")
    with pytest.raises(errors.InvalidRequest):
        await engine.wait(sub.job.id, timeout=-1)
    with pytest.raises(errors.InvalidRequest):
        await engine.wait(sub.job.id, timeout="soon")  # type: ignore[arg-type]


async def test_updates_follow_a_job_through_a_retry_to_its_refund() -> None:
    engine = make(MemoryStore(), ["transient", "permanent"], charge_at="submit")
    await Ledger(engine.store).grant("alice", 10)
    sub = await engine.submit("alice", None, {"prompt": "a red circle"})
    worker = asyncio.create_task(run_later(engine, sub.job.id, after=0.2, times=2))
    seen: list[JobUpdate] = [u async for u in engine.updates(sub.job.id, timeout=10)]
    await worker
    kinds = [u.kind for u in seen]
    assert kinds[0] == "queued" and kinds[-2:] == ["failed", "refunded"]
    assert "retrying" in kinds
    assert seen[-1].amount == 2
    retry = seen[kinds.index("retrying")]
    assert retry.error_code == "provider_transient" and retry.attempt == 1
    versions = [u.version for u in seen]
    assert versions == sorted(versions)
    sse = seen[0].to_sse()
    assert sse.startswith(f"id: {seen[0].version}\nevent: queued\ndata: ")
    assert json.loads(sse.split("data: ", 1)[1])["job_id"] == sub.job.id


async def test_a_cancel_wakes_the_waiter() -> None:
    engine = make(MemoryStore())
    sub = await engine.submit("alice", None, {"prompt": "a red circle"})

    async def cancel_soon() -> None:
        await asyncio.sleep(0.2)
        await engine.cancel(sub.job.id, "alice")

    task = asyncio.create_task(cancel_soon())
    job = await engine.wait(sub.job.id, timeout=10)
    await task
    assert job.last_error is not None and job.last_error.code == "cancelled"


def test_the_sync_facade_waits_and_streams() -> None:
    sync = SyncEngine(make(MemoryStore()))
    sub = sync.submit("alice", None, {"prompt": "a red circle"})
    assert sync.wait(sub.job.id, timeout=0.1).status is JobStatus.QUEUED
    sync.cancel(sub.job.id, "alice")
    assert [u.kind for u in sync.updates(sub.job.id)] == ["failed"]
    assert sync.wait(sub.job.id).terminal


@pytest.mark.postgres
async def test_postgres_wakes_a_waiter_by_notification_not_by_polling(postgres_url: str) -> None:
    import secrets

    import psycopg

    from chatsvg_core.storage.postgres import PostgresStore

    schema = f"chatsvg_wait_{secrets.token_hex(4)}"
    store = await PostgresStore.open(postgres_url, schema=schema)
    try:
        assert isinstance(store, JobChangeFeed)
        counted = CountingFeedStore(store)
        engine = make(counted)  # type: ignore[arg-type]
        assert isinstance(engine.store, JobChangeFeed)
        sub = await engine.submit("alice", None, {"prompt": "a red circle"})
        # Another store (another process, in production) cancels the job.
        other = make(await PostgresStore.open(postgres_url, schema=schema))

        async def cancel_later() -> None:
            await asyncio.sleep(2.0)
            await other.cancel(sub.job.id, "alice")

        task = asyncio.create_task(cancel_later())
        before = counted.transactions
        started = time.monotonic()
        job = await engine.wait(sub.job.id, timeout=30)
        waited = time.monotonic() - started
        await task
        await other.store.aclose()
        assert job.terminal
        # Woken by NOTIFY: a poll would have read ~8 times, the safety re-read is at 15 s.
        assert 2.0 <= waited < 4.0
        assert counted.transactions - before <= 3  # first read, listener start, the change
    finally:
        await store.aclose()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
