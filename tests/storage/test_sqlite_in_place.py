"""SQLite's in-place primitives equal the shared ones they replace, row for row.

``SQLiteTransaction`` runs the hot primitives' statements on its cursor in
one coroutine (issue 15): ``succeed_held`` with ``put_result``'s insert,
``insert_entry`` with ``_append_entry``'s statements, ``spend_state``'s usual
capped read (each value bound once). The shared versions
in ``SQLTransaction`` (the same statements through ``_one``/``_exec``) are the
reference: on random jobs and results, and on random entries whose (kind,
ref) collide, both give the same answers, the same errors and the same rows
(jobs, results, ledger, the accounts' balances and cap counters).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chatsvg_core.jobs import Job, claim, new_job
from chatsvg_core.storage import EntryKind, JobResult, LedgerEntry, Store
from chatsvg_core.storage._sql import SQLTransaction
from chatsvg_core.storage.sqlite import SQLiteTransaction
from chatsvg_core.testing.strategies import reachable_jobs

from ._sqlhelpers import fresh_sqlite

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))
_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# A job just claimed (version 2), for the examples every run tries.
_RUNNING = claim(
    new_job(job_id="j", owner="alice", request={}, request_hash="h", now=T0),
    now=T0,
    worker_id="w",
    lease=timedelta(seconds=30),
)


class _Undo(Exception):
    """Ends each run: its transaction rolls back and the store stays as it was."""


@pytest.fixture
def store() -> Iterator[Store]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    context = fresh_sqlite(synchronous="normal")
    opened = loop.run_until_complete(context.__aenter__())
    yield opened
    loop.run_until_complete(context.__aexit__(None, None, None))
    loop.close()
    asyncio.set_event_loop(None)


def _in_rollback(store: Store, body: Callable[[SQLiteTransaction], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        out: list[Any] = []
        try:
            async with store.transaction() as tx:
                assert isinstance(tx, SQLiteTransaction)
                out.append(await body(tx))
                raise _Undo
        except _Undo:
            pass
        return out[0]

    return asyncio.get_event_loop().run_until_complete(run())


async def _rows(tx: SQLiteTransaction) -> Any:
    return (
        await tx._all("SELECT * FROM chatsvg_jobs ORDER BY id"),
        await tx._all("SELECT * FROM chatsvg_results ORDER BY job_id"),
        await tx._all("SELECT * FROM chatsvg_ledger ORDER BY id"),
        # Not created_at: lock_account stamps a new account with the store's clock.
        await tx._all(
            "SELECT owner, balance, cap_since, cap_until, cap_used FROM chatsvg_accounts "
            "ORDER BY owner"
        ),
    )


@_SETTINGS
@given(
    job=reachable_jobs(),
    seconds=st.integers(-10, 100),
    token_shift=st.integers(-1, 1),
    stored_first=st.booleans(),
    metadata=st.dictionaries(st.text(max_size=3), st.integers() | st.text(max_size=3), max_size=3),
    version_shift=st.none() | st.integers(-1, 1),
)
@example(job=_RUNNING, seconds=1, token_shift=0, stored_first=False, metadata={}, version_shift=0)
@example(job=_RUNNING, seconds=1, token_shift=0, stored_first=True, metadata={}, version_shift=1)
def test_succeed_held_in_place_equals_the_shared_path(
    store: Store,
    job: Job,
    seconds: int,
    token_shift: int,
    stored_first: bool,
    metadata: dict[str, Any],
    version_shift: int | None,
) -> None:
    """With or without the held ``version`` (the held job's own, or one a
    heartbeat has moved past, or a wrong one): the same answer and rows."""
    now = job.updated_at + timedelta(seconds=seconds)
    token = max(1, (job.lease_token or job.attempt or 1) + token_shift)
    result = JobResult(job_id=job.id, svg="<svg/>", metadata=metadata, created_at=now)
    first = JobResult(job_id=job.id, svg="<svg id='a'/>", metadata={"first": 1}, created_at=T0)

    def run(call: Callable[..., Awaitable[Any]]) -> Any:
        async def body(tx: SQLiteTransaction) -> Any:
            await tx.insert_job(job)
            if stored_first:
                await tx.put_result(first)
            got = await call(tx, job.id, token=token, now=now, result=result)
            return got, await _rows(tx)

        return _in_rollback(store, body)

    held = None if version_shift is None else job.version + version_shift
    fast = partial(SQLiteTransaction.succeed_held, version=held)
    assert run(fast) == run(SQLTransaction.succeed_held)


_OWNERS = st.sampled_from(["alice", "bob"])
_REFS = st.sampled_from([None, "job-1", "job-2"])
_ENTRIES = st.builds(
    lambda i, owner, kind, amount, ref, day: LedgerEntry(
        id=f"e-{i}",
        owner=owner,
        kind=kind,
        amount=amount,
        ref=ref,
        memo=None,
        created_at=T0 + timedelta(days=day),
    ),
    st.integers(0, 10**6),
    _OWNERS,
    st.sampled_from(list(EntryKind)),
    st.integers(-5, 5) | st.sampled_from([2**63 - 1, -(2**63), 2**63, -(2**63) - 1]),
    _REFS,
    st.sampled_from([-1, 0]),
)


@_SETTINGS
@given(entries=st.lists(_ENTRIES, min_size=1, max_size=8, unique_by=lambda e: e.id))
@example(
    entries=[
        LedgerEntry(
            id="e-1", owner="alice", kind=EntryKind.CHARGE, amount=-2, ref="job-1", created_at=T0
        ),
        LedgerEntry(
            id="e-2", owner="bob", kind=EntryKind.CHARGE, amount=-3, ref="job-1", created_at=T0
        ),
        LedgerEntry(
            id="e-3", owner="bob", kind=EntryKind.REFUND, amount=2, ref="job-1", created_at=T0
        ),
    ]
)
def test_insert_entry_in_place_equals_the_shared_path(
    store: Store, entries: list[LedgerEntry]
) -> None:
    def run(call: Callable[..., Awaitable[Any]]) -> Any:
        async def body(tx: SQLiteTransaction) -> Any:
            # Both owners count today's usage (the cap counter's window).
            since, until = (round((t - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 10**6)
                            for t in DAY)  # fmt: skip
            for owner in ("alice", "bob"):
                await tx.lock_account(owner, create=True)
                await tx._exec(
                    "UPDATE chatsvg_accounts SET cap_since = ?, cap_until = ?, cap_used = 0 "
                    "WHERE owner = ?",
                    (since, until, owner),
                )
            outcomes: list[Any] = []
            for entry in entries:
                try:
                    outcomes.append(await call(tx, entry))
                except Exception as exc:  # the same error class and message, both ways
                    outcomes.append((type(exc), str(exc)))
            return outcomes, await _rows(tx)

        return _in_rollback(store, body)

    async def reference(tx: SQLiteTransaction, entry: LedgerEntry) -> LedgerEntry:
        # The shared insert_entry over the shared _append_entry (one _exec per statement).
        tx._append_entry = partial(SQLTransaction._append_entry, tx)  # type: ignore[method-assign]
        return await SQLTransaction.insert_entry(tx, entry)

    assert run(SQLiteTransaction.insert_entry) == run(reference)


_SPEND_ENTRIES = st.builds(
    lambda i, kind, amount, ref, day: LedgerEntry(
        id=f"s-{i}",
        owner="alice",
        kind=kind,
        amount=amount,
        ref=ref,
        memo=None,
        created_at=T0 + timedelta(days=day),
    ),
    st.integers(0, 10**6),
    st.sampled_from([EntryKind.CHARGE, EntryKind.RESERVE, EntryKind.REFUND, EntryKind.GRANT]),
    st.integers(-5, 5).filter(bool),
    st.sampled_from(["job-1", "job-2", None]),
    st.sampled_from([-1, 0]),
)


@_SETTINGS
@given(
    account=st.sampled_from(["none", "bare", "this window", "another window"]),
    entries=st.lists(_SPEND_ENTRIES, max_size=5, unique_by=lambda e: e.id),
    kind=st.sampled_from([EntryKind.CHARGE, EntryKind.RESERVE]),
    ref=st.sampled_from(["job-1", "job-2"]),
    capped=st.booleans(),
)
def test_spend_state_in_place_equals_the_shared_path(
    store: Store,
    account: str,
    entries: list[LedgerEntry],
    kind: EntryKind,
    ref: str,
    capped: bool,
) -> None:
    """SQLite's ``spend_state`` (its usual capped read in place) answers and stores
    what the shared ``SQLTransaction.spend_state`` does: accounts with and
    without this window's counter, replays, the other mode, no account, no cap."""
    other = EntryKind.RESERVE if kind is EntryKind.CHARGE else EntryKind.CHARGE
    window = DAY if capped else None

    def run(call: Callable[..., Awaitable[Any]]) -> Any:
        async def body(tx: SQLiteTransaction) -> Any:
            if account != "none":
                await tx.lock_account("alice", create=True)
            for entry in entries:
                await tx.insert_entry(entry)
            if account in ("this window", "another window"):
                start = DAY[0] if account == "this window" else DAY[0] - timedelta(days=1)
                since, until = (tx._ts(start), tx._ts(start + timedelta(days=1)))
                await tx._exec(
                    "UPDATE chatsvg_accounts SET cap_since = ?, cap_until = ?, cap_used = 4 "
                    "WHERE owner = 'alice'",
                    (since, until),
                )
            got = await call(tx, "alice", kind, other, ref, window)
            again = await call(tx, "alice", kind, other, ref, window)  # the window stored
            return got, again, await _rows(tx)

        return _in_rollback(store, body)

    fast = run(SQLiteTransaction.spend_state)
    assert fast == run(SQLTransaction.spend_state)


def test_claim_stores_each_lease_as_given(store: Store) -> None:
    """``claim_due`` stamps the expiry as now's stamp plus the lease, remembered
    by value: each lease, repeated or not, is stored and answered exactly."""
    from chatsvg_core.jobs import new_job

    leases = [
        timedelta(seconds=30),
        timedelta(minutes=5, microseconds=7),
        timedelta(seconds=30),
        timedelta(days=2, microseconds=999_999),
        timedelta(microseconds=1),
    ]

    async def body(tx: SQLiteTransaction) -> Any:
        for i in range(len(leases)):
            await tx.insert_job(
                new_job(job_id=f"j{i}", owner="o", request={}, request_hash="h", now=T0)
            )
        seen = []
        for i, lease in enumerate(leases):
            now = T0 + timedelta(seconds=i, microseconds=13 * i)
            job = await tx.claim_due(now, worker_id="w", lease_expires_at=now + lease)
            assert job is not None
            stored = await tx.get_job(job.id)
            assert stored is not None
            seen.append((job.lease_expires_at, stored.lease_expires_at, now + lease))
        return seen

    for answered, stored, wanted in _in_rollback(store, body):
        assert answered == stored == wanted
