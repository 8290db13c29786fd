"""The in-memory backend: a usable store for tests and notebooks, and the reference model.

:class:`MemoryStore` keeps everything in Python dictionaries and gives the
same guarantees the SQL backends give, in the simplest way that is obviously
right:

* **Serializable transactions.** One :class:`asyncio.Lock` per store is held
  for the whole of a transaction, so transactions run one after another.
  Every lock the protocol promises (``get_job(for_update=True)``,
  ``next_due_job``, ``lock_account``) is therefore held, and ``next_due_job``
  never hands two open transactions the same job.
* **Buffered writes.** A transaction writes into its own overlay; reads see
  the overlay first (read-your-writes). Leaving the block normally applies the
  overlay in one step; an exception discards it.
* **Uniqueness** of job ids, (scope, key) idempotency records and (kind, ref)
  ledger entries is checked against the committed state plus the overlay.

It lives on one event loop. Sync code and threads reach it through the sync
facade (:class:`chatsvg_core.storage.SyncStore`), which runs every call on the
library's single loop thread; do not share one instance between loops.

The conformance suite (:mod:`chatsvg_core.testing.conformance`) runs a host's
backend side by side with this one, so when the two disagree, this one is the
specification.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from chatsvg_core._clock import utc
from chatsvg_core.jobs import Job, JobStatus
from chatsvg_core.storage._errors import StoreClosed
from chatsvg_core.storage._protocol import (
    EntryKind,
    IdempotencyRecord,
    JobResult,
    LedgerEntry,
    StoreTransaction,
)

__all__ = ["MemoryStore"]

_REVERSAL: Final = {EntryKind.CHARGE: EntryKind.REFUND, EntryKind.RESERVE: EntryKind.RELEASE}


@dataclass
class _State:
    """Committed data, or one transaction's not-yet-committed overlay of it."""

    jobs: dict[str, Job] = field(default_factory=dict)
    results: dict[str, JobResult] = field(default_factory=dict)
    idempotency: dict[tuple[str, str], IdempotencyRecord | None] = field(default_factory=dict)
    accounts: set[str] = field(default_factory=set)
    entries: list[LedgerEntry] = field(default_factory=list)
    entry_keys: dict[tuple[EntryKind, str], LedgerEntry] = field(default_factory=dict)
    purged: set[str] = field(default_factory=set)
    """Job ids deleted (with their results) by this transaction."""


class MemoryStore:
    """A :class:`~chatsvg_core.storage.Store` held in memory; the reference backend.

    >>> import asyncio
    >>> async def demo() -> int:
    ...     store = MemoryStore()
    ...     async with store.transaction() as tx:
    ...         await tx.lock_account("alice", create=True)
    ...     async with store.transaction() as tx:
    ...         return await tx.balance("alice")
    >>> asyncio.run(demo())
    0
    """

    name: Final = "memory"

    def __init__(self) -> None:
        self._data = _State()
        self._queued: set[str] = set()
        self._balances: dict[str, int] = {}
        self._by_owner: dict[str, list[LedgerEntry]] = {}
        self._lock = asyncio.Lock()
        self._holder: asyncio.Task[object] | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the memory store is closed", store=self.name, what="store")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[StoreTransaction]:
        """Open a transaction: commit on normal exit, discard every write on exception.

        Raises:
            StoreClosed: after :meth:`aclose`.
            RuntimeError: when the calling task already holds a transaction on
                this store (it would wait for itself forever).
        """
        self._check_open()
        task = asyncio.current_task()
        if task is not None and task is self._holder:
            raise RuntimeError(
                "nested transaction on one MemoryStore from the same task: pass the open "
                "transaction down instead of opening another"
            )
        async with self._lock:
            self._check_open()
            self._holder = task
            tx = self._new_transaction()
            try:
                yield tx
            except BaseException:
                tx._finish()
                raise
            else:
                tx._finish()
                self._apply(tx._overlay)
            finally:
                self._holder = None

    def _new_transaction(self) -> _MemoryTransaction:
        # A seam for the tests that prove the conformance suite catches broken stores.
        return _MemoryTransaction(self)

    async def aclose(self) -> None:
        """Close the store; waits for a running transaction to finish first. Idempotent."""
        if self._closed:
            return
        async with self._lock:
            self._closed = True

    def _apply(self, overlay: _State) -> None:
        data = self._data
        for job in overlay.jobs.values():
            data.jobs[job.id] = job
            if job.status is JobStatus.QUEUED:
                self._queued.add(job.id)
            else:
                self._queued.discard(job.id)
        data.results.update(overlay.results)
        for job_id in overlay.purged:
            data.jobs.pop(job_id, None)
            data.results.pop(job_id, None)
            self._queued.discard(job_id)
        for key, record in overlay.idempotency.items():
            if record is None:
                data.idempotency.pop(key, None)
            else:
                data.idempotency[key] = record
        data.accounts |= overlay.accounts
        for entry in overlay.entries:
            data.entries.append(entry)
            self._by_owner.setdefault(entry.owner, []).append(entry)
            self._balances[entry.owner] = self._balances.get(entry.owner, 0) + entry.amount
        data.entry_keys.update(overlay.entry_keys)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._data.jobs)} jobs"
        return f"MemoryStore({state})"


def _older_than(before: datetime | None, before_id: str | None) -> Callable[[datetime, str], bool]:
    """The paging filter: before a timestamp, or before a (timestamp, id) cursor."""
    if before is None:
        return lambda at, row_id: True
    cutoff = utc(before)
    if before_id is None:
        return lambda at, row_id: at < cutoff
    return lambda at, row_id: (at, row_id) < (cutoff, before_id)


def _newest_first(items: Iterable[LedgerEntry]) -> list[LedgerEntry]:
    return sorted(items, key=lambda e: (e.created_at, e.id), reverse=True)


class _MemoryTransaction:
    """One transaction of a :class:`MemoryStore`; writes go to an overlay until commit."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._base = store._data
        self._overlay = _State()
        self._done = False

    def _finish(self) -> None:
        self._done = True

    def _check(self) -> None:
        if self._done:
            raise StoreClosed(
                "this transaction has ended; open a new one", store="memory", what="transaction"
            )
        self._store._check_open()

    # --- jobs -----------------------------------------------------------------

    def _job(self, job_id: str) -> Job | None:
        if job_id in self._overlay.purged:
            return None
        job = self._overlay.jobs.get(job_id)
        return job if job is not None else self._base.jobs.get(job_id)

    def _all_jobs(self) -> dict[str, Job]:
        jobs = {**self._base.jobs, **self._overlay.jobs}
        for job_id in self._overlay.purged:
            jobs.pop(job_id, None)
        return jobs

    async def purge_jobs(self, *, before: datetime, now: datetime, limit: int) -> int:
        """Delete up to ``limit`` purgeable jobs and their results; see ``JobPurger``."""
        self._check()
        before, now = utc(before), utc(now)
        live = {
            r.job_id
            for r in {**self._base.idempotency, **self._overlay.idempotency}.values()
            if r is not None and r.expires_at > now
        }

        def held(job: Job) -> bool:
            def has(kind: EntryKind) -> bool:
                return self._entry(kind, job.id) is not None

            unrefunded = job.status is JobStatus.FAILED and has(EntryKind.CHARGE)
            unrefunded = unrefunded and not has(EntryKind.REFUND)
            unsettled = has(EntryKind.RESERVE) and not (
                has(EntryKind.CAPTURE) or has(EntryKind.RELEASE)
            )
            return unrefunded or unsettled

        found = sorted(
            (
                j
                for j in self._all_jobs().values()
                if j.terminal and j.updated_at < before and j.id not in live and not held(j)
            ),
            key=lambda j: (j.updated_at, j.id),
        )[: max(limit, 0)]
        for job in found:
            self._overlay.purged.add(job.id)
            self._overlay.jobs.pop(job.id, None)
            self._overlay.results.pop(job.id, None)
        return len(found)

    async def insert_job(self, job: Job) -> None:
        self._check()
        if self._job(job.id) is not None:
            raise ValueError(f"a job with id {job.id!r} already exists")
        self._overlay.jobs[job.id] = job

    async def get_job(self, job_id: str, *, for_update: bool = False) -> Job | None:
        self._check()
        return self._job(job_id)

    async def update_job(self, job: Job, *, expected_version: int) -> bool:
        self._check()
        current = self._job(job.id)
        if current is None or current.version != expected_version:
            return False
        self._overlay.jobs[job.id] = job
        return True

    async def next_due_job(self, now: datetime) -> Job | None:
        self._check()
        now = utc(now)
        candidates = {i: self._base.jobs[i] for i in self._store._queued}
        candidates.update(self._overlay.jobs)
        due = [j for j in candidates.values() if j.status is JobStatus.QUEUED and j.run_at <= now]
        if not due:
            return None
        return min(due, key=lambda j: (j.run_at, j.created_at, j.id))

    async def expired_jobs(self, now: datetime, *, limit: int) -> Sequence[Job]:
        self._check()
        now = utc(now)
        expired = [
            j
            for j in self._all_jobs().values()
            if j.status is JobStatus.RUNNING
            and j.lease_expires_at is not None
            and j.lease_expires_at <= now
        ]
        expired.sort(key=lambda j: (j.lease_expires_at or now, j.id))
        return expired[: max(limit, 0)]

    async def list_jobs(
        self,
        *,
        owner: str | None = None,
        status: JobStatus | None = None,
        limit: int = 100,
        before: datetime | None = None,
        before_id: str | None = None,
    ) -> Sequence[Job]:
        self._check()
        older = _older_than(before, before_id)
        found = [
            j
            for j in self._all_jobs().values()
            if (owner is None or j.owner == owner)
            and (status is None or j.status is status)
            and older(j.created_at, j.id)
        ]
        found.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        return found[: max(limit, 0)]

    async def put_result(self, result: JobResult) -> JobResult:
        self._check()
        existing = self._overlay.results.get(result.job_id) or self._base.results.get(result.job_id)
        if existing is not None:
            return existing
        self._overlay.results[result.job_id] = result
        return result

    async def get_result(self, job_id: str) -> JobResult | None:
        self._check()
        return self._overlay.results.get(job_id) or self._base.results.get(job_id)

    # --- idempotency ----------------------------------------------------------

    def _record(self, key: tuple[str, str]) -> IdempotencyRecord | None:
        if key in self._overlay.idempotency:
            return self._overlay.idempotency[key]
        return self._base.idempotency.get(key)

    async def claim_idempotency(
        self, record: IdempotencyRecord, *, now: datetime
    ) -> IdempotencyRecord:
        self._check()
        now = utc(now)
        key = (record.scope, record.key)
        existing = self._record(key)
        if existing is not None and existing.expires_at > now:
            return existing
        self._overlay.idempotency[key] = record
        return record

    async def prune_idempotency(self, now: datetime, *, limit: int) -> int:
        self._check()
        now = utc(now)
        keys = {**self._base.idempotency, **self._overlay.idempotency}
        expired = sorted(
            (r.expires_at, k) for k, r in keys.items() if r is not None and r.expires_at <= now
        )[: max(limit, 0)]
        for _, k in expired:
            self._overlay.idempotency[k] = None
        return len(expired)

    # --- ledger ---------------------------------------------------------------

    async def lock_account(self, owner: str, *, create: bool = False) -> bool:
        self._check()
        # The store-wide lock already serializes transactions, so holding the
        # account lock needs nothing more here.
        if owner in self._base.accounts or owner in self._overlay.accounts:
            return True
        if create:
            self._overlay.accounts.add(owner)
            return True
        return False

    def _entry(self, kind: EntryKind, ref: str) -> LedgerEntry | None:
        key = (kind, ref)
        return self._overlay.entry_keys.get(key) or self._base.entry_keys.get(key)

    async def insert_entry(self, entry: LedgerEntry) -> LedgerEntry:
        self._check()
        if entry.ref is not None:
            existing = self._entry(entry.kind, entry.ref)
            if existing is not None:
                return existing
            self._overlay.entry_keys[(entry.kind, entry.ref)] = entry
        self._overlay.entries.append(entry)
        return entry

    async def find_entry(self, kind: EntryKind, ref: str) -> LedgerEntry | None:
        self._check()
        return self._entry(kind, ref)

    def _owner_entries(self, owner: str) -> list[LedgerEntry]:
        return [
            *self._store._by_owner.get(owner, ()),
            *(e for e in self._overlay.entries if e.owner == owner),
        ]

    async def balance(self, owner: str) -> int:
        self._check()
        pending = sum(e.amount for e in self._overlay.entries if e.owner == owner)
        return self._store._balances.get(owner, 0) + pending

    async def sum_entries(
        self, owner: str, kinds: Sequence[EntryKind], *, since: datetime, until: datetime
    ) -> int:
        self._check()
        since, until = utc(since), utc(until)
        wanted = set(kinds)
        return sum(
            e.amount
            for e in self._owner_entries(owner)
            if e.kind in wanted and since <= e.created_at < until
        )

    async def usage(self, owner: str, *, since: datetime, until: datetime) -> int:
        self._check()
        since, until = utc(since), utc(until)
        spent = 0
        for e in self._owner_entries(owner):
            reversal = _REVERSAL.get(e.kind)
            if reversal is None or not since <= e.created_at < until:
                continue
            if e.ref is not None and self._entry(reversal, e.ref) is not None:
                continue
            spent -= e.amount
        return spent

    async def entries(
        self,
        owner: str,
        *,
        limit: int = 100,
        before: datetime | None = None,
        before_id: str | None = None,
    ) -> Sequence[LedgerEntry]:
        self._check()
        older = _older_than(before, before_id)
        found = [e for e in self._owner_entries(owner) if older(e.created_at, e.id)]
        return _newest_first(found)[: max(limit, 0)]
