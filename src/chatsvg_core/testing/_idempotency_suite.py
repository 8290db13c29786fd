"""Idempotency conformance: checks a host runs against its own store.

Each check takes an async store factory (``async def make() -> Store``
returning a store on a new, empty database), uses the store, closes it with
``aclose()``, and raises :class:`AssertionError` describing the first broken
promise. They need no test framework::

    from chatsvg_core.testing import run_idempotency_suite

    async def test_idempotency_conformance():
        await run_idempotency_suite(my_store_factory)

The central promise is that :func:`~chatsvg_core.idempotency.create_or_replay`
is one atomic step on the store: many concurrent first submits with one key
create exactly one job. A store meets it only if ``claim_idempotency`` makes
concurrent claimers of one (scope, key) wait for the winner's commit (a
unique constraint plus ``INSERT ... ON CONFLICT``, a row lock, or a
store-wide lock) and rolls the claim back with the rest of a failed
transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, ClassVar, Final

import anyio
import anyio.lowlevel

from chatsvg_core.errors import IdempotencyConflict, TransientError
from chatsvg_core.idempotency import (
    Created,
    Replayed,
    create_or_replay,
    idempotency_scope,
    prune_expired,
    request_hash,
)
from chatsvg_core.jobs import Job, new_job
from chatsvg_core.storage import Store
from chatsvg_core.testing.conformance._base import ConformanceBase

__all__ = [
    "IDEMPOTENCY_CHECKS",
    "IdempotencyConformance",
    "StoreFactory",
    "check_concurrent_conflicting_submits",
    "check_concurrent_same_submits",
    "check_expired_key_reusable",
    "check_rollback_frees_key",
    "check_scopes_isolated",
    "check_sequential_semantics",
    "run_idempotency_suite",
]

StoreFactory = Callable[[], Awaitable[Store]]
"""An async callable returning a store on a new, empty database."""

_T0: Final = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_TTL: Final = timedelta(hours=24)
_TRANSIENT_RETRIES: Final = 5


def _expect(condition: bool, message: str) -> None:
    # Not ``assert``: hosts may run their suites with ``python -O``.
    if not condition:
        raise AssertionError(message)


class _Boom(Exception):
    """Raised inside a transaction to force its rollback."""


@dataclass
class _SubmitTally:
    """What a crowd of concurrent submitters got back."""

    created: list[Created] = field(default_factory=list)
    replayed: list[tuple[int, Replayed]] = field(default_factory=list)
    conflicts: list[int] = field(default_factory=list)
    transient_retries: int = 0


def _job(job_id: str, owner: str, scope: str, key: str, payload: dict[str, Any]) -> Job:
    return new_job(
        job_id=job_id,
        owner=owner,
        request=payload,
        request_hash=request_hash(payload, scope=scope),
        now=_T0,
        idempotency_key=key,
    )


async def _submit(
    store: Store, job: Job, scope: str, key: str, now: datetime, tally: _SubmitTally
) -> Created | Replayed:
    # A store may report a lost serialization race as a transient error; a
    # host's engine retries those, so the suite does too, a bounded number of times.
    for attempt in range(_TRANSIENT_RETRIES + 1):
        try:
            async with store.transaction() as tx:
                return await create_or_replay(tx, job=job, scope=scope, key=key, now=now, ttl=_TTL)
        except TransientError:
            if attempt == _TRANSIENT_RETRIES:
                raise
            tally.transient_retries += 1
            await anyio.sleep(0.005 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


async def _crowd(
    store: Store, jobs: Sequence[Job], scope: str, key: str, now: datetime = _T0
) -> _SubmitTally:
    tally = _SubmitTally()
    start = anyio.Event()

    async def one(index: int, job: Job) -> None:
        await start.wait()  # release everyone at once, for the tightest race
        try:
            outcome = await _submit(store, job, scope, key, now, tally)
        except IdempotencyConflict:
            tally.conflicts.append(index)
            return
        if isinstance(outcome, Created):
            tally.created.append(outcome)
        else:
            tally.replayed.append((index, outcome))

    async with anyio.create_task_group() as tg:
        for index, job in enumerate(jobs):
            tg.start_soon(one, index, job)
        await anyio.lowlevel.checkpoint()
        start.set()
    return tally


async def _jobs_of(store: Store, owner: str) -> list[Job]:
    async with store.transaction() as tx:
        return list(await tx.list_jobs(owner=owner, limit=1000))


async def _with_store(factory: StoreFactory, body: Callable[[Store], Awaitable[None]]) -> None:
    store = await factory()
    try:
        await body(store)
    finally:
        await store.aclose()


async def check_concurrent_same_submits(factory: StoreFactory, *, submitters: int = 50) -> None:
    """``submitters`` concurrent first submits, one key, one payload: one job, the rest replay."""
    owner, key = "owner-same", "key-same"
    scope = idempotency_scope(owner)
    payload = {"prompt": "a red circle", "size": 256}
    jobs = [_job(f"same-{i:03d}", owner, scope, key, payload) for i in range(submitters)]

    async def body(store: Store) -> None:
        tally = await _crowd(store, jobs, scope, key)
        _expect(len(tally.created) == 1, f"expected 1 Created, got {len(tally.created)}")
        winner = tally.created[0].job_id
        _expect(not tally.conflicts, f"same payload refused as a conflict: {tally.conflicts}")
        _expect(
            len(tally.replayed) == submitters - 1,
            f"expected {submitters - 1} Replayed, got {len(tally.replayed)}",
        )
        for index, outcome in tally.replayed:
            _expect(outcome.job_id == winner, f"submitter {index} replayed {outcome.job_id}")
            _expect(outcome.job is not None and outcome.job.id == winner, "replay lacks the job")
        stored = await _jobs_of(store, owner)
        _expect([j.id for j in stored] == [winner], f"store holds {[j.id for j in stored]}")

    await _with_store(factory, body)


async def check_concurrent_conflicting_submits(
    factory: StoreFactory, *, submitters: int = 50
) -> None:
    """Concurrent first submits of two payloads under one key: one job; others replay or conflict.

    A submitter whose payload matches the winner's replays the winner's job;
    one whose payload differs gets :class:`IdempotencyConflict`.
    """
    owner, key = "owner-mixed", "key-mixed"
    scope = idempotency_scope(owner)
    payloads = [{"prompt": "a red circle"}, {"prompt": "a blue square"}]
    hashes = [request_hash(p, scope=scope) for p in payloads]
    jobs = [_job(f"mixed-{i:03d}", owner, scope, key, payloads[i % 2]) for i in range(submitters)]

    async def body(store: Store) -> None:
        tally = await _crowd(store, jobs, scope, key)
        _expect(len(tally.created) == 1, f"expected 1 Created, got {len(tally.created)}")
        winner = tally.created[0]
        side = hashes.index(winner.record.request_hash)
        for index, outcome in tally.replayed:
            _expect(index % 2 == side, f"submitter {index} (other payload) replayed, not refused")
            _expect(outcome.job_id == winner.job_id, f"submitter {index} replayed another job")
        for index in tally.conflicts:
            _expect(index % 2 != side, f"submitter {index} (winner's payload) got a conflict")
        _expect(1 + len(tally.replayed) + len(tally.conflicts) == submitters, "lost outcomes")
        stored = await _jobs_of(store, owner)
        _expect([j.id for j in stored] == [winner.job_id], f"store holds {[j.id for j in stored]}")
        _expect(stored[0].request == payloads[side], "the stored job is not the winner's")

    await _with_store(factory, body)


async def check_sequential_semantics(factory: StoreFactory) -> None:
    """Create, then replay (whatever the job's state), then conflict, one after another."""
    owner, key = "owner-seq", "key-seq"
    scope = idempotency_scope(owner)
    payload = {"prompt": "a green star", "options": {"size": 128, "style": "flat"}}
    reordered = {"options": {"style": "flat", "size": 128}, "prompt": "a green star"}

    async def body(store: Store) -> None:
        first = await _submit(
            store, _job("seq-1", owner, scope, key, payload), scope, key, _T0, _SubmitTally()
        )
        _expect(isinstance(first, Created) and first.job_id == "seq-1", f"first: {first!r}")
        later = _T0 + timedelta(hours=1)
        again = await _submit(
            store, _job("seq-2", owner, scope, key, reordered), scope, key, later, _SubmitTally()
        )
        _expect(isinstance(again, Replayed), f"a retry with reordered keys gave {again!r}")
        _expect(
            again.job_id == "seq-1" and again.job is not None and again.job.id == "seq-1",
            f"the replay is not the original job: {again!r}",
        )
        try:
            other = await _submit(
                store,
                _job("seq-3", owner, scope, key, {**payload, "prompt": "a red star"}),
                scope,
                key,
                later,
                _SubmitTally(),
            )
        except IdempotencyConflict as exc:
            _expect(
                exc.fields.get("scope") == scope and exc.fields.get("key") == key,
                f"conflict lacks scope/key fields: {exc!r}",
            )
        else:
            raise AssertionError(f"a different payload under a used key gave {other!r}")
        stored = await _jobs_of(store, owner)
        _expect([j.id for j in stored] == ["seq-1"], f"store holds {[j.id for j in stored]}")

    await _with_store(factory, body)


async def check_scopes_isolated(factory: StoreFactory) -> None:
    """One key in two owners' scopes (and two operations of one owner) binds separate jobs."""
    key = "shared-key"
    payload = {"prompt": "a yellow moon"}
    cases = [("alice", None), ("bob", None), ("alice", "generate"), ("alice", "edit")]

    async def body(store: Store) -> None:
        for index, (owner, operation) in enumerate(cases):
            scope = idempotency_scope(owner, operation)
            job = _job(f"iso-{index}", owner, scope, key, payload)
            outcome = await _submit(store, job, scope, key, _T0, _SubmitTally())
            _expect(isinstance(outcome, Created), f"{scope!r} saw another scope's key: {outcome!r}")

    await _with_store(factory, body)


async def check_rollback_frees_key(factory: StoreFactory) -> None:
    """A transaction that claims a key and then fails leaves the key free (no orphan record)."""
    owner, key = "owner-rb", "key-rb"
    scope = idempotency_scope(owner)
    payload = {"prompt": "a purple cube"}

    async def body(store: Store) -> None:
        try:
            async with store.transaction() as tx:
                await create_or_replay(
                    tx, job=_job("rb-1", owner, scope, key, payload), scope=scope, key=key, now=_T0
                )
                raise _Boom
        except _Boom:
            pass
        outcome = await _submit(
            store, _job("rb-2", owner, scope, key, payload), scope, key, _T0, _SubmitTally()
        )
        _expect(
            isinstance(outcome, Created) and outcome.job_id == "rb-2",
            f"a rolled-back claim still binds the key: {outcome!r}",
        )
        stored = await _jobs_of(store, owner)
        _expect([j.id for j in stored] == ["rb-2"], f"store holds {[j.id for j in stored]}")

    await _with_store(factory, body)


async def _submit_expecting_no_conflict(
    store: Store, job: Job, scope: str, key: str, now: datetime
) -> Created | Replayed:
    try:
        return await _submit(store, job, scope, key, now, _SubmitTally())
    except IdempotencyConflict as exc:
        raise AssertionError(
            f"an expired key was not reusable: {job.id} at {now.isoformat()} got {exc!r}"
        ) from exc


async def check_expired_key_reusable(factory: StoreFactory) -> None:
    """After its TTL a key binds a new request (even a different one); pruning removes records."""
    owner, key = "owner-ttl", "key-ttl"
    scope = idempotency_scope(owner)

    async def body(store: Store) -> None:
        first = await _submit(
            store, _job("ttl-1", owner, scope, key, {"v": 1}), scope, key, _T0, _SubmitTally()
        )
        _expect(isinstance(first, Created), f"first submit gave {first!r}")
        just_before = _T0 + _TTL - timedelta(seconds=1)
        try:
            await _submit(
                store,
                _job("ttl-x", owner, scope, key, {"v": 2}),
                scope,
                key,
                just_before,
                _SubmitTally(),
            )
        except IdempotencyConflict:
            pass
        else:
            raise AssertionError("a live key accepted a different payload")
        at_expiry = _T0 + _TTL  # expired "at or before now"
        second = await _submit_expecting_no_conflict(
            store, _job("ttl-2", owner, scope, key, {"v": 2}), scope, key, at_expiry
        )
        _expect(
            isinstance(second, Created) and second.job_id == "ttl-2",
            f"an expired key was not reusable: {second!r}",
        )
        _expect(second.record.expires_at == at_expiry + _TTL, "the new record's expiry is wrong")
        # ttl-2's record is live until T0 + 2 TTL; nothing else to prune before then.
        early = await prune_expired(store, now=at_expiry + timedelta(seconds=1))
        _expect(early == 0, f"pruning removed {early} live or replaced records")
        pruned = await prune_expired(store, now=at_expiry + _TTL, batch_size=1)
        _expect(pruned == 1, f"pruning removed {pruned} records, expected 1")
        third = await _submit_expecting_no_conflict(
            store, _job("ttl-3", owner, scope, key, {"v": 3}), scope, key, at_expiry + _TTL
        )
        _expect(isinstance(third, Created), f"a pruned key was not reusable: {third!r}")

    await _with_store(factory, body)


IDEMPOTENCY_CHECKS: Final[tuple[Callable[[StoreFactory], Awaitable[None]], ...]] = (
    check_sequential_semantics,
    check_scopes_isolated,
    check_rollback_frees_key,
    check_expired_key_reusable,
    check_concurrent_same_submits,
    check_concurrent_conflicting_submits,
)
"""Every check, for hosts that want one test per check (``pytest.mark.parametrize``)."""


async def run_idempotency_suite(factory: StoreFactory, *, submitters: int = 50) -> None:
    """Run every check against stores from ``factory``; the first failure raises."""
    await check_sequential_semantics(factory)
    await check_scopes_isolated(factory)
    await check_rollback_frees_key(factory)
    await check_expired_key_reusable(factory)
    await check_concurrent_same_submits(factory, submitters=submitters)
    await check_concurrent_conflicting_submits(factory, submitters=submitters)


class IdempotencyConformance(ConformanceBase):
    """The checks as pytest tests, for hosts using the class-based conformance suites.

    Subclass it (alone or next to
    :class:`~chatsvg_core.testing.conformance.StoreConformance`) in a
    ``Test*`` class and implement ``open_store()``; each check gets fresh
    stores from it. ``submitters`` sets the crowd size of the two
    concurrency checks.
    """

    submitters: ClassVar[int] = 50

    def _check(self, check: Callable[[StoreFactory], Awaitable[None]]) -> None:
        async def main() -> None:
            async with AsyncExitStack() as stack:

                async def factory() -> Store:
                    return await stack.enter_async_context(self.open_store())

                await check(factory)

        asyncio.run(main())

    def test_idempotency_sequential_semantics(self) -> None:
        """Create, replay (whatever the job's state), conflict."""
        self._check(check_sequential_semantics)

    def test_idempotency_scopes_isolated(self) -> None:
        """One key in different scopes binds different jobs."""
        self._check(check_scopes_isolated)

    def test_idempotency_rollback_frees_key(self) -> None:
        """A failed transaction leaves its key unclaimed."""
        self._check(check_rollback_frees_key)

    def test_idempotency_expired_key_reusable(self) -> None:
        """Expiry frees a key; pruning deletes expired records."""
        self._check(check_expired_key_reusable)

    def test_idempotency_concurrent_same_submits(self) -> None:
        """N concurrent submits, one payload: one job, N - 1 replays."""
        self._check(partial(check_concurrent_same_submits, submitters=self.submitters))

    def test_idempotency_concurrent_conflicting_submits(self) -> None:
        """N concurrent submits, two payloads: one job; replays or conflicts."""
        self._check(partial(check_concurrent_conflicting_submits, submitters=self.submitters))
