"""Job operations over the store: examples of each refusal, and that a refusal writes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from chatsvg_core.errors import InvalidTransition, JobNotFound, StaleLease
from chatsvg_core.jobs import Job, JobErrorInfo, JobStatus, new_job
from chatsvg_core.ledger import Ledger, charge, refund
from chatsvg_core.storage import (
    MemoryStore,
    Store,
    StoreTransaction,
    claim_job,
    claim_next,
    complete_job,
    expire_leases,
    fail_job,
    heartbeat_job,
    retry_job,
)
from chatsvg_core.testing import FakeClock

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
LEASE = timedelta(seconds=30)
ERR = JobErrorInfo(code="x", type="X", message="m", transient=True)


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    s = MemoryStore()
    async with s.transaction() as tx:
        for i in range(3):
            await tx.insert_job(
                new_job(job_id=f"j{i}", owner="alice", request={}, request_hash="h", now=NOW)
            )
    yield s
    await s.aclose()


async def get(store: Store, job_id: str) -> Job:
    async with store.transaction() as tx:
        job = await tx.get_job(job_id)
    assert job is not None
    return job


async def test_missing_job(store: Store) -> None:
    async with store.transaction() as tx:
        with pytest.raises(JobNotFound):
            await claim_job(tx, "nope", now=NOW, worker_id="w", lease=LEASE)
        with pytest.raises(JobNotFound):
            await heartbeat_job(tx, "nope", token=1, now=NOW, lease=LEASE)


async def test_claim_heartbeat_complete(store: Store) -> None:
    async with store.transaction() as tx:
        job = await claim_job(tx, "j1", now=NOW, worker_id="w", lease=LEASE)
    assert (job.status, job.lease_token, job.worker_id) == (JobStatus.RUNNING, 1, "w")
    later = NOW + timedelta(seconds=20)
    async with store.transaction() as tx:
        beat = await heartbeat_job(tx, "j1", token=1, now=later, lease=LEASE)
    assert beat.lease_expires_at == later + LEASE
    async with store.transaction() as tx:
        done, result = await complete_job(tx, "j1", token=1, now=later, svg="<svg/>")
    assert done.status is JobStatus.SUCCEEDED
    assert done.result_ref == "j1"
    assert result.svg == "<svg/>"
    assert await get(store, "j1") == done


async def test_redelivered_claim_is_refused(store: Store) -> None:
    async with store.transaction() as tx:
        await claim_job(tx, "j0", now=NOW, worker_id="w1", lease=LEASE)
    async with store.transaction() as tx:
        with pytest.raises(InvalidTransition) as err:
            await claim_job(tx, "j0", now=NOW, worker_id="w2", lease=LEASE)
    assert err.value.reason == "wrong_status"
    assert (await get(store, "j0")).worker_id == "w1"


async def test_stale_token_writes_nothing(store: Store) -> None:
    async with store.transaction() as tx:
        await claim_job(tx, "j0", now=NOW, worker_id="w1", lease=LEASE)
    expiry = NOW + LEASE
    async with store.transaction() as tx:
        expired = await expire_leases(tx, now=expiry)
    assert [j.id for j in expired] == ["j0"]
    async with store.transaction() as tx:
        again = await claim_job(tx, "j0", now=expiry, worker_id="w2", lease=LEASE)
    assert again.lease_token == 2
    before = await get(store, "j0")
    for attempt in (
        lambda tx: complete_job(tx, "j0", token=1, now=expiry, svg="<svg>late</svg>"),
        lambda tx: heartbeat_job(tx, "j0", token=1, now=expiry, lease=LEASE),
        lambda tx: retry_job(tx, "j0", token=1, now=expiry, run_at=expiry, error=ERR),
        lambda tx: fail_job(tx, "j0", token=1, now=expiry, error=ERR),
    ):
        with pytest.raises(StaleLease):
            async with store.transaction() as tx:
                await attempt(tx)
    assert await get(store, "j0") == before
    async with store.transaction() as tx:
        assert await tx.get_result("j0") is None, "a stale worker's result was stored"


async def test_retry_then_fail_with_refund_in_one_transaction(store: Store) -> None:
    ledger = Ledger(store, clock=FakeClock(NOW))
    await ledger.grant("alice", 10)
    async with store.transaction() as tx:
        job = await claim_job(tx, "j2", now=NOW, worker_id="w", lease=LEASE)
        await charge(tx, job.owner, 4, ref=job.id, now=NOW)
    later = NOW + timedelta(seconds=5)
    async with store.transaction() as tx:
        queued = await retry_job(tx, "j2", token=1, now=later, run_at=later, error=ERR)
    assert queued.status is JobStatus.QUEUED
    async with store.transaction() as tx:
        job = await claim_job(tx, "j2", now=later, worker_id="w", lease=LEASE)
        await charge(tx, job.owner, 4, ref=job.id, now=later)  # a repeat: no second charge
        failed = await fail_job(tx, "j2", token=2, now=later, error=ERR)
        await refund(tx, "j2", now=later)
    assert failed.status is JobStatus.FAILED
    assert await ledger.balance("alice") == 10


async def test_fail_before_running(store: Store) -> None:
    async with store.transaction() as tx:
        failed = await fail_job(tx, "j0", now=NOW, error=ERR)
    assert failed.status is JobStatus.FAILED
    async with store.transaction() as tx:
        with pytest.raises(InvalidTransition) as err:
            await claim_job(tx, "j0", now=NOW, worker_id="w", lease=LEASE)
    assert err.value.reason == "terminal"


async def test_claim_next_none_when_nothing_due() -> None:
    s = MemoryStore()
    async with s.transaction() as tx:
        assert await claim_next(tx, now=NOW, worker_id="w", lease=LEASE) is None
        later = NOW + timedelta(minutes=1)
        await tx.insert_job(
            new_job(job_id="x", owner="o", request={}, request_hash="h", now=NOW, run_at=later)
        )
        assert await claim_next(tx, now=NOW, worker_id="w", lease=LEASE) is None
        got = await claim_next(tx, now=later, worker_id="w", lease=LEASE)
        assert got is not None
        assert got.id == "x"


async def test_expire_uses_run_at_for_and_fails_when_attempts_are_spent() -> None:
    s = MemoryStore()
    async with s.transaction() as tx:
        for i, attempts in ((0, 1), (1, 2)):
            await tx.insert_job(
                new_job(
                    job_id=f"e{i}",
                    owner="o",
                    request={},
                    request_hash="h",
                    now=NOW,
                    max_attempts=attempts,
                )
            )
            await claim_job(tx, f"e{i}", now=NOW, worker_id="w", lease=LEASE)
    at = NOW + LEASE
    async with s.transaction() as tx:
        assert await expire_leases(tx, now=at - timedelta(seconds=1)) == []
        done = await expire_leases(tx, now=at, run_at_for=lambda j: at + timedelta(seconds=9))
    by_id = {j.id: j for j in done}
    assert by_id["e0"].status is JobStatus.FAILED
    assert by_id["e1"].status is JobStatus.QUEUED
    assert by_id["e1"].run_at == at + timedelta(seconds=9)


class _StaleRead:
    """A transaction whose locked read returns an old copy: a backend with a broken row lock."""

    def __init__(self, tx: StoreTransaction, old: Job) -> None:
        self._tx = tx
        self._old = old

    async def get_job(self, job_id: str, *, for_update: bool = False) -> Job | None:
        return self._old

    async def update_job(self, job: Job, *, expected_version: int) -> bool:
        return await self._tx.update_job(job, expected_version=expected_version)

    async def expired_jobs(self, now: datetime, *, limit: int) -> Sequence[Job]:
        return await self._tx.expired_jobs(now, limit=limit)


async def test_lost_compare_and_set_is_refused_and_writes_nothing(store: Store) -> None:
    old = await get(store, "j0")
    async with store.transaction() as tx:
        await claim_job(tx, "j0", now=NOW, worker_id="w1", lease=LEASE)
    current = await get(store, "j0")
    async with store.transaction() as tx:
        stale = _StaleRead(tx, old)
        with pytest.raises(InvalidTransition) as err:
            await claim_job(stale, "j0", now=NOW, worker_id="w2", lease=LEASE)  # type: ignore[arg-type]
    assert err.value.reason == "version_conflict"
    assert await get(store, "j0") == current
