"""The sync facade: the async store and ledger driven from threads, through one loop thread."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from chatsvg_core.errors import DailyCapExceeded, InsufficientCredits, RefundWithoutCharge
from chatsvg_core.jobs import JobStatus, new_job
from chatsvg_core.ledger import LedgerPolicy, SyncLedger, charge, grant
from chatsvg_core.storage import (
    MemoryStore,
    StoreClosed,
    StoreTransaction,
    SyncStore,
    claim_next,
    complete_job,
)
from chatsvg_core.testing import FakeClock
from chatsvg_core.testing.conformance import check_ledger_invariants

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_threads_charging_one_owner_keep_the_invariants() -> None:
    store = SyncStore(MemoryStore())
    ledger = SyncLedger(store, clock=FakeClock(NOW), policy=LedgerPolicy(daily_cap=30))
    ledger.grant("alice", 50)

    def worker(k: int) -> int:
        refused = 0
        for i in range(k, 40, 8):
            for ref in (f"j{i}", f"j{(i + 1) % 40}"):
                try:
                    ledger.charge("alice", 3, ref=ref)
                except (InsufficientCredits, DailyCapExceeded):
                    refused += 1
            if i % 4 == 0:
                with contextlib.suppress(RefundWithoutCharge):
                    ledger.refund(f"j{i}")
        return refused

    with ThreadPoolExecutor(8) as pool:
        refused = sum(pool.map(worker, range(8)))
    assert refused > 0

    async def check(tx: StoreTransaction) -> int:
        await check_ledger_invariants(tx, ("alice",))
        return await tx.usage(
            "alice", since=NOW - timedelta(hours=12), until=NOW + timedelta(hours=12)
        )

    assert store.run(check) <= 30
    store.close()


def test_sync_transaction_commits_and_rolls_back() -> None:
    with SyncStore(MemoryStore()) as store:
        with store.transaction() as tx:
            tx(grant, "bob", 5, now=NOW)
            fresh = new_job(job_id="j1", owner="bob", request={}, request_hash="h", now=NOW)
            tx(lambda t: t.insert_job(fresh))

        class Crash(Exception):
            pass

        def claim_charge_crash() -> None:
            with store.transaction() as tx:
                job = tx(claim_next, now=NOW, worker_id="w", lease=timedelta(seconds=30))
                assert job is not None
                tx(charge, "bob", 5, ref=job.id, now=NOW)
                raise Crash

        with pytest.raises(Crash):
            claim_charge_crash()

        with store.transaction() as tx:
            assert tx(lambda t: t.balance("bob")) == 5
            job = tx(claim_next, now=NOW, worker_id="w", lease=timedelta(seconds=30))
            assert job is not None
            assert job.lease_token == 1
            done, result = tx(complete_job, job.id, token=1, now=NOW, svg="<svg/>")
        assert done.status is JobStatus.SUCCEEDED
        assert result.svg == "<svg/>"


def test_sync_use_after_close() -> None:
    store = SyncStore(MemoryStore())
    ledger = SyncLedger(store)
    ledger.grant("carol", 1)
    store.close()
    store.close()
    with pytest.raises(StoreClosed):
        ledger.balance("carol")
    with pytest.raises(StoreClosed), store.transaction():
        pass


def test_sync_facade_works_inside_a_running_loop() -> None:
    # Jupyter runs cells inside a loop; the facade must not try to nest one.
    async def cell() -> int:
        ledger = SyncLedger(MemoryStore())
        ledger.grant("dora", 7, external_id="p1")
        ledger.grant("dora", 7, external_id="p1")
        return ledger.balance("dora")

    assert asyncio.run(cell()) == 7


def test_open_creates_the_store_on_the_loop_thread() -> None:
    async def opener() -> MemoryStore:
        asyncio.get_running_loop()  # must be called on a loop
        return MemoryStore()

    with SyncStore.open(opener) as store:
        ledger = SyncLedger(store)
        ledger.grant("erin", 2)
        assert ledger.statement("erin").balance == 2
        assert ledger.usage("erin").used == 0
