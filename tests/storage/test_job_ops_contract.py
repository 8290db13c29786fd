"""The job operations' contract with their store, from the survivors of a mutation run.

``storage/_jobs.py`` promises (its module docstring): each operation reads the
job with its row locked, applies one pure transition function, and writes it
with a compare-and-set on ``version``; a lost compare-and-set raises and names
the action. A transaction that offers a fast path (:class:`JobClaimer`,
:class:`JobFinisher`, :class:`HeldJobFinisher`, :class:`LeaseExtender`: the
SQL backends) gets it, with the same checks and the same outcome. A
recording transaction checks each rule call by call, on the memory store
(reference paths) and on SQLite (fast paths). See docs/mutation.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chatsvg_core.errors import InvalidTransition, JobNotFound, StaleLease
from chatsvg_core.jobs import Job, JobErrorInfo, JobStatus, cancel, claim, expire, new_job
from chatsvg_core.storage import (
    MemoryStore,
    Store,
    cancel_job,
    claim_job,
    claim_next,
    complete_job,
    expire_leases,
    fail_job,
    heartbeat_job,
    heartbeat_jobs,
    retry_job,
)
from chatsvg_core.storage.sqlite import SQLiteStore

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
LEASE = timedelta(seconds=30)
ERR = JobErrorInfo(code="x", type="X", message="m", transient=True)
FAST = ("claim_due", "succeed_job", "succeed_held", "extend_leases")


class _Spy:
    """A transaction that records its calls; it can lose every compare-and-set,
    refuse its fast success, or hide its fast paths."""

    def __init__(
        self, tx: Any, *, lose_updates: bool = False, refuse_fast: bool = False, fast: bool = True
    ) -> None:
        self._tx = tx
        self._lose = lose_updates
        self._refuse = refuse_fast
        self._fast = fast
        self.calls: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        if name in FAST and not self._fast:
            raise AttributeError(name)
        attr = getattr(self._tx, name)
        if name not in FAST:
            return attr

        async def recorded(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args[0] if args else None))
            if name in ("succeed_job", "succeed_held") and self._refuse:
                return None
            return await attr(*args, **kwargs)

        return recorded

    async def get_job(self, job_id: str, *, for_update: bool = False) -> Job | None:
        self.calls.append(("get_job", (job_id, for_update)))
        job: Job | None = await self._tx.get_job(job_id, for_update=for_update)
        return job

    async def next_due_job(self, now: datetime) -> Job | None:
        job: Job | None = await self._tx.next_due_job(now)
        self.calls.append(("next_due_job", job.id if job else None))
        return job

    async def update_job(self, job: Job, *, expected_version: int) -> bool:
        self.calls.append(("update_job", job.id))
        if self._lose:
            return False
        done: bool = await self._tx.update_job(job, expected_version=expected_version)
        return done

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def _job(job_id: str, max_attempts: int = 3) -> Job:
    return new_job(
        job_id=job_id,
        owner="alice",
        request={},
        request_hash="h",
        now=T0,
        max_attempts=max_attempts,
    )


async def _fill(store: Store) -> Store:
    async with store.transaction() as tx:
        for job_id in ("q", "r", "s"):
            await tx.insert_job(_job(job_id))
        await claim_job(tx, "r", now=T0, worker_id="w", lease=LEASE)
        await claim_job(tx, "s", now=T0, worker_id="w", lease=LEASE)
    return store


@pytest.fixture
async def memory() -> AsyncIterator[Store]:
    store = await _fill(MemoryStore())
    yield store
    await store.aclose()


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[Store]:
    store = await _fill(await SQLiteStore.open(tmp_path / "jobs.db"))
    yield store
    await store.aclose()


@pytest.fixture(params=["memory", "sqlite"])
async def either(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The memory store (reference paths) or SQLite (fast paths)."""
    if request.param == "memory":
        store: Store = MemoryStore()
    else:
        store = await SQLiteStore.open(tmp_path / "jobs.db")
    yield await _fill(store)
    await store.aclose()


T1 = T0 + timedelta(seconds=10)
LAPSED = T0 + LEASE

# (action the error names, the operation on a store holding q QUEUED and r, s RUNNING)
OPERATIONS: list[tuple[str, Callable[[Any], Awaitable[object]]]] = [
    ("claim", lambda tx: claim_job(tx, "q", now=T1, worker_id="w", lease=LEASE)),
    ("claim", lambda tx: claim_next(tx, now=T1, worker_id="w", lease=LEASE)),
    ("heartbeat", lambda tx: heartbeat_job(tx, "r", token=1, now=T1, lease=LEASE)),
    ("heartbeat", lambda tx: heartbeat_jobs(tx, {"r": 1}, now=T1, lease=LEASE)),
    ("retry", lambda tx: retry_job(tx, "r", token=1, now=T1, run_at=T1, error=ERR)),
    ("fail", lambda tx: fail_job(tx, "r", token=1, now=T1, error=ERR)),
    ("fail", lambda tx: fail_job(tx, "q", now=T1, error=ERR)),
    ("cancel", lambda tx: cancel_job(tx, "r", now=T1)),
    ("succeed", lambda tx: complete_job(tx, "r", token=1, now=T1, svg="<svg/>")),
    ("expire", lambda tx: expire_leases(tx, now=LAPSED)),
]


@pytest.mark.parametrize(("action", "op"), OPERATIONS)
async def test_every_write_follows_a_locked_read_of_the_same_job(
    memory: Store, action: str, op: Callable[[Any], Awaitable[object]]
) -> None:
    async with memory.transaction() as tx:
        spy = _Spy(tx)
        await op(spy)
    locked: set[str] = set()
    writes = 0
    for name, arg in spy.calls:
        if name == "get_job" and arg[1] is True:
            locked.add(arg[0])
        elif name == "next_due_job" and arg is not None:
            locked.add(arg)  # next_due_job locks the row it hands out
        elif name == "update_job":
            writes += 1
            assert arg in locked, f"{action} wrote {arg} without locking it first"
    assert writes >= 1


@pytest.mark.parametrize(("action", "op"), OPERATIONS)
async def test_a_lost_compare_and_set_names_the_action_and_the_job(
    memory: Store, action: str, op: Callable[[Any], Awaitable[object]]
) -> None:
    async with memory.transaction() as tx:
        before = {j: await tx.get_job(j) for j in ("q", "r", "s")}
        with pytest.raises(InvalidTransition) as caught:
            await op(_Spy(tx, lose_updates=True))
    job_id = caught.value.fields["job_id"]
    job = before[job_id]
    assert job is not None
    assert caught.value.message == f"job {job_id} changed while {action} was being applied"
    assert dict(caught.value.fields) == {
        "job_id": job_id,
        "status": job.status.value,
        "action": action,
        "reason": "version_conflict",
    }


@pytest.mark.parametrize(
    "op",
    [
        lambda tx: claim_job(tx, "nope", now=T1, worker_id="w", lease=LEASE),
        lambda tx: heartbeat_job(tx, "nope", token=1, now=T1, lease=LEASE),
        lambda tx: retry_job(tx, "nope", token=1, now=T1, run_at=T1, error=ERR),
        lambda tx: fail_job(tx, "nope", now=T1, error=ERR),
        lambda tx: cancel_job(tx, "nope", now=T1),
        lambda tx: complete_job(tx, "nope", token=1, now=T1, svg="<svg/>"),
    ],
)
async def test_an_unknown_job_is_named(
    either: Store, op: Callable[[Any], Awaitable[object]]
) -> None:
    async with either.transaction() as tx:
        with pytest.raises(JobNotFound) as caught:
            await op(tx)
    assert (caught.value.message, dict(caught.value.fields)) == (
        "no job 'nope'",
        {"job_id": "nope"},
    )


async def test_a_cancel_records_its_reason(memory: Store) -> None:
    async with memory.transaction() as tx:
        before = await tx.get_job("r")
        assert before is not None
        gone = await cancel_job(tx, "r", now=T1, reason="the user left")
    assert gone == cancel(before, now=T1, reason="the user left")


# --- expiry: only what is still lapsed when locked --------------------------------------


async def test_the_default_expiry_batch_is_a_hundred_leases() -> None:
    store = MemoryStore()
    async with store.transaction() as tx:
        for i in range(101):
            await tx.insert_job(_job(f"j{i:03}"))
            await claim_job(tx, f"j{i:03}", now=T0, worker_id="w", lease=LEASE)
    async with store.transaction() as tx:
        assert len(await expire_leases(tx, now=LAPSED)) == 100
        assert len(await expire_leases(tx, now=LAPSED)) == 1


class _StaleListing(_Spy):
    """Lists jobs as they were when an earlier snapshot was taken."""

    def __init__(self, tx: Any, listed: list[Job]) -> None:
        super().__init__(tx)
        self.listed = listed

    async def expired_jobs(self, now: datetime, *, limit: int) -> list[Job]:
        return self.listed[:limit]


async def test_a_job_that_changed_or_vanished_since_it_was_listed_is_left_alone(
    memory: Store,
) -> None:
    async with memory.transaction() as tx:
        r, s = await tx.get_job("r"), await tx.get_job("s")
        assert r is not None and s is not None
        # Listed first: s, since heartbeated; a job since deleted; r, since completed;
        # then r's twin that is still lapsed. Only the last is expired.
        await heartbeat_job(tx, "s", token=1, now=LAPSED, lease=LEASE)
        await complete_job(tx, "r", token=1, now=T1, svg="<svg/>")
        await tx.insert_job(_job("t"))
        await claim_job(tx, "t", now=T0, worker_id="w", lease=LEASE)
        t = await tx.get_job("t")
        assert t is not None
        gone = _job("gone")
        spy = _StaleListing(tx, [s, gone, r, t])
        expired = await expire_leases(spy, now=LAPSED)
    assert [j.id for j in expired] == ["t"]
    assert expired[0] == expire(t, now=LAPSED)


async def test_a_batch_heartbeat_skips_an_unknown_job_and_goes_on(memory: Store) -> None:
    async with memory.transaction() as tx:
        spy = _Spy(tx, fast=False)
        kept = await heartbeat_jobs(spy, {"a-unknown": 1, "r": 1, "s": 9}, now=T1, lease=LEASE)
    assert kept == {"r"}


# --- fast paths: taken when offered, same checks, same outcome --------------------------


async def test_each_fast_path_is_taken_when_the_transaction_offers_it(sqlite: Store) -> None:
    async with sqlite.transaction() as tx:
        spy = _Spy(tx)
        await claim_next(spy, now=T1, worker_id="w2", lease=LEASE)
        assert spy.names() == ["claim_due"]
    async with sqlite.transaction() as tx:
        spy = _Spy(tx)
        await heartbeat_jobs(spy, {"r": 1}, now=T1, lease=LEASE)
        assert spy.names() == ["extend_leases"]
    async with sqlite.transaction() as tx:
        spy = _Spy(tx)
        await complete_job(spy, "r", token=1, now=T1, svg="<svg/>")
        assert spy.names() == ["succeed_job"]


async def test_a_finish_from_the_held_job_reads_no_row_back(sqlite: Store) -> None:
    async with sqlite.transaction() as tx:
        held = await tx.get_job("r")
        other = await tx.get_job("s")
    assert held is not None and other is not None
    # Not this job, another token, not running: the held job is ignored.
    for wrong in (other, held._step(lease_token=2, attempt=2), held):
        async with sqlite.transaction() as tx:
            spy = _Spy(tx, refuse_fast=True)
            token = 1 if wrong is not held else 3
            with pytest.raises(InvalidTransition):
                await complete_job(spy, "r", token=token, now=T1, svg="<svg/>", held=wrong)
            assert spy.names() == ["succeed_job", "get_job"], wrong
    async with sqlite.transaction() as tx:
        spy = _Spy(tx)
        await complete_job(spy, "r", token=1, now=T1, svg="<svg/>", held=held)
        assert spy.names() == ["succeed_held"]


async def test_a_finish_from_the_held_job_equals_the_reference(either: Store) -> None:
    """After heartbeats moved the row on, the held job's finish is the row's finish."""
    async with either.transaction() as tx:
        held = await tx.get_job("r")
        twin = await tx.get_job("s")
        await heartbeat_job(tx, "r", token=1, now=T1, lease=LEASE * 3)
        await heartbeat_job(tx, "s", token=1, now=T1, lease=LEASE * 3)
        await heartbeat_jobs(tx, {"r": 1, "s": 1}, now=T1, lease=LEASE)
    assert held is not None and twin is not None
    later = T1 + timedelta(seconds=1)
    async with either.transaction() as tx:
        done, result = await complete_job(
            tx, "r", token=1, now=later, svg="<svg/>", metadata={"k": [1]}, held=held
        )
        stored = await tx.get_job("r")
        reference, _ = await complete_job(tx, "s", token=1, now=later, svg="<svg/>")
    assert done == stored
    assert done.version == held.version + 3
    assert done.model_dump() == {**reference.model_dump(), "id": "r", "result_ref": "r"}
    assert (result.job_id, dict(result.metadata)) == ("r", {"k": [1]})


async def test_a_stale_holder_is_refused_with_the_reference_reason(either: Store) -> None:
    async with either.transaction() as tx:
        held = await tx.get_job("r")
        await expire_leases(tx, now=LAPSED)
        await claim_job(tx, "r", now=LAPSED, worker_id="w2", lease=LEASE)
    assert held is not None
    async with either.transaction() as tx:
        with pytest.raises(StaleLease):
            await complete_job(tx, "r", token=1, now=LAPSED, svg="<svg/>", held=held)
        assert await tx.get_result("r") is None
    async with either.transaction() as tx:
        await complete_job(tx, "r", token=2, now=LAPSED, svg="<svg/>")
    async with either.transaction() as tx:
        with pytest.raises(InvalidTransition) as caught:
            await complete_job(tx, "r", token=1, now=LAPSED, svg="<svg/>", held=held)
    assert caught.value.fields["reason"] == "terminal"


async def test_claim_next_gives_what_claim_gives(either: Store) -> None:
    async with either.transaction() as tx:
        before = await tx.get_job("q")
        assert before is not None
        got = await claim_next(tx, now=T1, worker_id="w2", lease=LEASE)
    assert got == claim(before, now=T1, worker_id="w2", lease=LEASE)
    assert got is not None and got.lease_expires_at == T1 + LEASE


async def test_claim_next_refuses_bad_arguments_alike(either: Store) -> None:
    async with either.transaction() as tx:
        with pytest.raises(ValueError, match=r"^worker_id is a string, not int$"):
            await claim_next(tx, now=T1, worker_id=7, lease=LEASE)  # type: ignore[arg-type]
        for lease in (timedelta(0), -LEASE):
            with pytest.raises(ValueError, match=r"^a lease must last a positive time$"):
                await claim_next(tx, now=T1, worker_id="w", lease=lease)
        # The shortest lease is a lease.
        job = await claim_next(tx, now=T1, worker_id="w", lease=timedelta(microseconds=1))
        assert job is not None and job.lease_expires_at == T1 + timedelta(microseconds=1)


async def test_heartbeat_jobs_extends_exactly_and_refuses_an_empty_lease(either: Store) -> None:
    async with either.transaction() as tx:
        for lease in (timedelta(0), -LEASE):
            with pytest.raises(ValueError, match=r"^lease must be positive$"):
                await heartbeat_jobs(tx, {"r": 1}, now=T1, lease=lease)
        assert await heartbeat_jobs(tx, {"r": 1, "s": 2, "q": 1}, now=T1, lease=2 * LEASE) == {"r"}
        r = await tx.get_job("r")
        s = await tx.get_job("s")
    assert r is not None and r.lease_expires_at == T1 + 2 * LEASE
    assert s is not None and s.lease_expires_at == T0 + LEASE


async def test_complete_job_stores_the_result_only_for_the_holder(either: Store) -> None:
    async with either.transaction() as tx:
        with pytest.raises(StaleLease):
            await complete_job(tx, "r", token=2, now=T1, svg="<svg/>")
        assert await tx.get_result("r") is None
        done, result = await complete_job(
            tx, "r", token=1, now=T1, svg="<svg id='a'/>", metadata={"k": 1}
        )
    assert (done.status, done.result_ref, done.lease_token, done.updated_at) == (
        JobStatus.SUCCEEDED,
        "r",
        None,
        T1,
    )
    assert (result.job_id, result.svg, dict(result.metadata), result.created_at) == (
        "r",
        "<svg id='a'/>",
        {"k": 1},
        T1,
    )


@pytest.mark.parametrize("from_held", [False, True])
async def test_a_fast_success_refused_without_a_reason_is_a_version_conflict(
    sqlite: Store, from_held: bool
) -> None:
    async with sqlite.transaction() as tx:
        held = await tx.get_job("r") if from_held else None
        with pytest.raises(InvalidTransition) as caught:
            await complete_job(
                _Spy(tx, refuse_fast=True), "r", token=1, now=T1, svg="<svg/>", held=held
            )
    assert caught.value.message == "job r could be succeeded but the store refused it"
    assert dict(caught.value.fields) == {
        "job_id": "r",
        "status": "running",
        "action": "succeed",
        "reason": "version_conflict",
    }


async def test_the_retry_time_of_an_expired_job_is_asked_about_that_job(memory: Store) -> None:
    asked: list[Job] = []

    def run_at_for(job: Job) -> datetime:
        asked.append(job)
        return LAPSED + timedelta(seconds=job.attempt)

    async with memory.transaction() as tx:
        r = await tx.get_job("r")
        expired = await expire_leases(tx, now=LAPSED, run_at_for=run_at_for)
    assert r is not None and asked[0] == r
    assert [j.run_at for j in expired] == [LAPSED + timedelta(seconds=1)] * 2
