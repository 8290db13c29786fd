"""The conformance suite fails on broken backends: each bug below is caught by a named test.

A suite that passes on the reference store proves little unless it also fails
where it should. Each broken store here is MemoryStore with one promise of
the protocol broken, the way a hand-written backend might break it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings

from chatsvg_core.jobs import Job, JobStatus
from chatsvg_core.storage import EntryKind, LedgerEntry, MemoryStore, Store, StoreTransaction
from chatsvg_core.storage._spend import SpendState, read_spend_state_reference
from chatsvg_core.storage.memory import _MemoryTransaction
from chatsvg_core.testing.conformance import StoreConformance


class _NoDedupTx(_MemoryTransaction):
    async def insert_entry(self, entry: LedgerEntry) -> LedgerEntry:
        self._overlay.entries.append(entry)  # forgets the (kind, ref) constraint
        return entry


class _CasIgnoresVersionTx(_MemoryTransaction):
    async def update_job(self, job: Job, *, expected_version: int) -> bool:
        self._overlay.jobs[job.id] = job  # no compare, just set
        return True


class _UsageCountsRefundedTx(_MemoryTransaction):
    async def usage(self, owner: str, *, since: datetime, until: datetime) -> int:
        spent = await self.sum_entries(
            owner, [EntryKind.CHARGE, EntryKind.RESERVE], since=since, until=until
        )
        return -spent


class _DueIgnoredTx(_MemoryTransaction):
    async def next_due_job(self, now: datetime) -> Job | None:
        queued = await self.list_jobs(status=JobStatus.QUEUED, limit=1000)
        return min(queued, key=lambda j: (j.run_at, j.created_at, j.id), default=None)


class _LeaseNeverExpiresTx(_MemoryTransaction):
    async def expired_jobs(self, now: datetime, *, limit: int) -> Sequence[Job]:
        return []


class _HeartbeatShortensTx(_MemoryTransaction):
    async def extend_leases(
        self, leases: Mapping[str, int], *, now: datetime, lease: timedelta
    ) -> set[str]:
        kept = set()
        for job_id, token in leases.items():
            job = await self.get_job(job_id, for_update=True)
            if job is None or job.status is not JobStatus.RUNNING or job.lease_token != token:
                continue
            # Sets the lease to now + lease even when it was longer.
            new = job.evolve(lease_expires_at=now + lease, version=job.version + 1, updated_at=now)
            await self.update_job(new, expected_version=job.version)
            kept.add(job_id)
        return kept


class _HeartbeatIgnoresTokenTx(_MemoryTransaction):
    async def extend_leases(
        self, leases: Mapping[str, int], *, now: datetime, lease: timedelta
    ) -> set[str]:
        kept = set()
        for job_id in leases:
            job = await self.get_job(job_id, for_update=True)
            if job is None or job.status is not JobStatus.RUNNING:
                continue
            current = job.lease_expires_at or now
            new = job.evolve(
                lease_expires_at=max(now + lease, current),
                version=job.version + 1,
                updated_at=now,
            )
            await self.update_job(new, expected_version=job.version)
            kept.add(job_id)
        return kept


class _SpendReadStaleBalanceTx(_MemoryTransaction):
    async def spend_state(
        self,
        owner: str,
        kind: EntryKind,
        other: EntryKind,
        ref: str,
        window: tuple[datetime, datetime] | None,
    ) -> SpendState:
        state = await read_spend_state_reference(self, owner, kind, other, ref, window)
        return replace(state, balance=state.balance + 1)  # off by one credit


def _store_with(tx_class: type[_MemoryTransaction]) -> type[MemoryStore]:
    class Broken(MemoryStore):
        bug = tx_class.__name__.strip("_").removesuffix("Tx")

        def _new_transaction(self) -> _MemoryTransaction:
            return tx_class(self)

    return Broken


class _RollbackKeepsWrites(MemoryStore):
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[StoreTransaction]:
        async with self._lock:
            tx = self._new_transaction()
            try:
                yield tx
            finally:  # commits even on exception
                tx._finish()
                self._apply(tx._overlay)


def _suite(store_class: type[MemoryStore]) -> StoreConformance:
    class Suite(StoreConformance):
        examples = 300

        def state_machine_settings(self) -> Any:
            # No shrinking: we only need to know that it fails, quickly.
            return settings(
                max_examples=self.examples,
                stateful_step_count=self.steps,
                deadline=None,
                phases=[Phase.generate],
                database=None,
                derandomize=True,  # a fixed seed: the same runs every time, no flakiness
                suppress_health_check=list(HealthCheck),
            )

        @asynccontextmanager
        async def open_store(self) -> AsyncIterator[Store]:
            yield store_class()

    return Suite()


CASES = [
    (_store_with(_NoDedupTx), "test_insert_entry_deduplicates_kind_and_ref"),
    (_store_with(_NoDedupTx), "test_ledger_state_machine"),
    (_store_with(_CasIgnoresVersionTx), "test_update_job_is_compare_and_set"),
    (_store_with(_UsageCountsRefundedTx), "test_balance_sums_and_windows"),
    (_store_with(_UsageCountsRefundedTx), "test_ledger_state_machine"),
    (_store_with(_DueIgnoredTx), "test_next_due_job_order_and_filter"),
    (_store_with(_LeaseNeverExpiresTx), "test_expired_jobs"),
    (_store_with(_LeaseNeverExpiresTx), "test_workers_claim_one_queue_without_overlap"),
    (_store_with(_LeaseNeverExpiresTx), "test_job_state_machine"),
    (_RollbackKeepsWrites, "test_rollback_discards_every_write"),
    (_store_with(_HeartbeatShortensTx), "test_batched_heartbeat_matches_one_by_one"),
    (_store_with(_HeartbeatIgnoresTokenTx), "test_batched_heartbeat_matches_one_by_one"),
    (_store_with(_HeartbeatIgnoresTokenTx), "test_job_state_machine"),
    (_store_with(_SpendReadStaleBalanceTx), "test_spend_read_matches_the_fine_primitives"),
    (_store_with(_SpendReadStaleBalanceTx), "test_ledger_state_machine"),
]


@pytest.mark.parametrize(
    ("store_class", "test_name"),
    CASES,
    ids=[f"{getattr(c[0], 'bug', c[0].__name__)}-{c[1]}" for c in CASES],
)
def test_conformance_suite_catches(store_class: type[MemoryStore], test_name: str) -> None:
    suite = _suite(store_class)
    with pytest.raises(Exception):  # noqa: B017 - any failure of the suite test will do
        getattr(suite, test_name)()
