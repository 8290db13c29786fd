"""Contract tests of the storage primitives, one promise per test."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from chatsvg_core.jobs import JobErrorInfo, JobStatus, claim, fail
from chatsvg_core.storage import (
    EntryKind,
    IdempotencyRecord,
    JobResult,
    Store,
    StoreClosed,
)
from chatsvg_core.testing.conformance._base import T0, ConformanceBase, entry, job

__all__ = ["PrimitiveConformance"]

LEASE = timedelta(seconds=30)
G, C, R = EntryKind.GRANT, EntryKind.CHARGE, EntryKind.REFUND


class _Boom(Exception):
    pass


def _record(key: str, job_id: str, *, ttl: float = 3600, at: float = 0) -> IdempotencyRecord:
    created = T0 + timedelta(seconds=at)
    return IdempotencyRecord(
        scope="owner-1",
        key=key,
        request_hash="hash-" + job_id,
        job_id=job_id,
        created_at=created,
        expires_at=created + timedelta(seconds=ttl),
    )


class PrimitiveConformance(ConformanceBase):
    """Each primitive of :class:`~chatsvg_core.storage.StoreTransaction` keeps its promise."""

    # --- transactions -----------------------------------------------------------

    def test_commit_makes_writes_visible(self) -> None:
        async def body(store: Store) -> None:
            j = job("j-commit")
            async with store.transaction() as tx:
                await tx.insert_job(j)
                await tx.lock_account("alice", create=True)
                await tx.insert_entry(entry("alice", G, 10, ref="ext-1"))
                assert await tx.get_job(j.id) == j, "a transaction reads its own writes"
                assert await tx.balance("alice") == 10
            async with store.transaction() as tx:
                assert await tx.get_job(j.id) == j
                assert await tx.lock_account("alice") is True
                assert await tx.balance("alice") == 10

        self.run(body)

    def test_rollback_discards_every_write(self) -> None:
        async def body(store: Store) -> None:
            j = job("j-rollback")
            async with store.transaction() as tx:
                await tx.insert_job(job("j-kept"))
            try:
                async with store.transaction() as tx:
                    await tx.insert_job(j)
                    kept = await tx.get_job("j-kept")
                    assert kept is not None
                    assert await tx.update_job(
                        claim(kept, now=T0, worker_id="w", lease=LEASE), expected_version=0
                    )
                    await tx.put_result(JobResult(job_id="j-kept", svg="<svg/>", created_at=T0))
                    await tx.claim_idempotency(_record("k1", j.id), now=T0)
                    await tx.lock_account("bob", create=True)
                    await tx.insert_entry(entry("bob", G, 5, ref="ext-rb"))
                    raise _Boom
            except _Boom:
                pass
            else:  # pragma: no cover - the block always raises
                raise AssertionError("the exception must propagate out of transaction()")
            async with store.transaction() as tx:
                assert await tx.get_job(j.id) is None
                kept = await tx.get_job("j-kept")
                assert kept is not None
                assert kept.status is JobStatus.QUEUED
                assert kept.version == 0
                assert await tx.get_result("j-kept") is None
                assert await tx.lock_account("bob") is False
                assert await tx.find_entry(G, "ext-rb") is None
                assert await tx.balance("bob") == 0
                fresh = await tx.claim_idempotency(_record("k1", "other"), now=T0)
                assert fresh.job_id == "other", "the rolled-back record must not exist"

        self.run(body)

    def test_exception_propagates_unchanged(self) -> None:
        async def body(store: Store) -> None:
            err = _Boom("mine")
            with pytest.raises(_Boom) as caught:
                async with store.transaction():
                    raise err
            assert caught.value is err

        self.run(body)

    def test_closed_store_refuses_work(self) -> None:
        async def body(store: Store) -> None:
            async with store.transaction() as tx:
                await tx.insert_job(job("j-closed"))
            finished = tx
            with pytest.raises(StoreClosed) as exc:
                await finished.get_job("j-closed")
            assert exc.value.fields["what"] == "transaction"
            await store.aclose()
            await store.aclose()  # idempotent
            try:
                async with store.transaction():
                    pass
            except StoreClosed:
                pass
            else:
                raise AssertionError("transaction() after aclose() must raise StoreClosed")

        self.run(body)

    # --- jobs -------------------------------------------------------------------

    def test_insert_job_twice_is_refused(self) -> None:
        async def body(store: Store) -> None:
            async with store.transaction() as tx:
                await tx.insert_job(job("j-dup"))
            try:
                async with store.transaction() as tx:
                    await tx.insert_job(job("j-dup", owner="someone-else"))
            except ValueError:
                pass
            else:
                raise AssertionError("a second job with one id must be refused")
            async with store.transaction() as tx:
                got = await tx.get_job("j-dup")
                assert got is not None
                assert got.owner == "owner-1"
                assert await tx.get_job("missing") is None

        self.run(body)

    def test_update_job_is_compare_and_set(self) -> None:
        async def body(store: Store) -> None:
            j = job("j-cas")
            async with store.transaction() as tx:
                await tx.insert_job(j)
            running = claim(j, now=T0, worker_id="w1", lease=LEASE)
            async with store.transaction() as tx:
                assert await tx.update_job(running, expected_version=0) is True
            stale = claim(j, now=T0, worker_id="w2", lease=LEASE)
            async with store.transaction() as tx:
                assert await tx.update_job(stale, expected_version=0) is False
                assert await tx.get_job(j.id) == running
                ghost = job("j-ghost")
                assert await tx.update_job(ghost, expected_version=0) is False
                assert await tx.get_job("j-ghost") is None

        self.run(body)

    def test_job_round_trips_every_field(self) -> None:
        async def body(store: Store) -> None:
            j = job("j-fields", nested={"a": [1, 2.5, None, True, "é"]}, max_attempts=1)
            running = claim(j, now=T0, worker_id="worker-ü", lease=LEASE)
            failed = fail(
                running,
                now=T0 + timedelta(seconds=1),
                token=1,
                error=JobErrorInfo(
                    code="x", type="X", message="m", transient=False, fields={"k": [1, "v"]}
                ),
            )
            async with store.transaction() as tx:
                await tx.insert_job(j)
                assert await tx.update_job(running, expected_version=0)
            async with store.transaction() as tx:
                assert await tx.get_job(j.id) == running
                assert await tx.update_job(failed, expected_version=1)
            async with store.transaction() as tx:
                assert await tx.get_job(j.id) == failed

        self.run(body)

    def test_next_due_job_order_and_filter(self) -> None:
        async def body(store: Store) -> None:
            async with store.transaction() as tx:
                assert await tx.next_due_job(T0) is None
                await tx.insert_job(job("late", run_at=T0 + timedelta(seconds=60)))
                await tx.insert_job(job("b", run_at=T0 - timedelta(seconds=5)))
                await tx.insert_job(job("a", run_at=T0 - timedelta(seconds=5)))
                await tx.insert_job(job("first", run_at=T0 - timedelta(seconds=9)))
                running = job("run", run_at=T0 - timedelta(seconds=99))
                await tx.insert_job(running)
                assert await tx.update_job(
                    claim(running, now=T0, worker_id="w", lease=LEASE), expected_version=0
                )
            order = []
            for _ in range(5):
                async with store.transaction() as tx:
                    nxt = await tx.next_due_job(T0)
                    if nxt is None:
                        break
                    order.append(nxt.id)
                    claimed = claim(nxt, now=T0, worker_id="w", lease=LEASE)
                    assert await tx.update_job(claimed, expected_version=nxt.version)
            assert order == ["first", "a", "b"], order

        self.run(body)

    def test_next_due_job_concurrent_claimers_get_distinct_jobs(self) -> None:
        async def body(store: Store) -> None:
            jobs = 6
            async with store.transaction() as tx:
                for i in range(jobs):
                    await tx.insert_job(job(f"q{i}", run_at=T0 - timedelta(seconds=i)))

            async def claimer(n: int) -> str | None:
                async with store.transaction() as tx:
                    nxt = await tx.next_due_job(T0)
                    if nxt is None:
                        return None
                    await asyncio.sleep(0)  # let others try while the row is locked
                    ok = await tx.update_job(
                        claim(nxt, now=T0, worker_id=f"w{n}", lease=LEASE),
                        expected_version=nxt.version,
                    )
                    assert ok, "a job handed out by next_due_job was changed by someone else"
                    return nxt.id

            got = await asyncio.gather(*(claimer(n) for n in range(jobs + 4)))
            claimed = [g for g in got if g is not None]
            assert len(claimed) == len(set(claimed)), f"a job was claimed twice: {claimed}"
            assert sorted(claimed) == sorted(f"q{i}" for i in range(jobs))

        self.run(body)

    def test_expired_jobs(self) -> None:
        async def body(store: Store) -> None:
            a, b, q = job("exp-a"), job("exp-b"), job("exp-q")
            async with store.transaction() as tx:
                for j in (a, b, q):
                    await tx.insert_job(j)
                assert await tx.update_job(
                    claim(a, now=T0, worker_id="w", lease=timedelta(seconds=10)),
                    expected_version=0,
                )
                assert await tx.update_job(
                    claim(b, now=T0, worker_id="w", lease=timedelta(seconds=20)),
                    expected_version=0,
                )
            async with store.transaction() as tx:
                assert await tx.expired_jobs(T0 + timedelta(seconds=9), limit=10) == []
                at10 = await tx.expired_jobs(T0 + timedelta(seconds=10), limit=10)
                assert [j.id for j in at10] == ["exp-a"], "a lease ending at now has expired"
                both = await tx.expired_jobs(T0 + timedelta(seconds=30), limit=10)
                assert sorted(j.id for j in both) == ["exp-a", "exp-b"]
                assert len(await tx.expired_jobs(T0 + timedelta(seconds=30), limit=1)) == 1

        self.run(body)

    def test_list_jobs_filters_orders_and_pages(self) -> None:
        async def body(store: Store) -> None:
            async with store.transaction() as tx:
                for i in range(5):
                    owner = "alice" if i % 2 == 0 else "bob"
                    await tx.insert_job(job(f"l{i}", owner=owner, now=T0 + timedelta(seconds=i)))
                first = await tx.get_job("l0")
                assert first is not None
                assert await tx.update_job(
                    claim(first, now=T0 + timedelta(seconds=9), worker_id="w", lease=LEASE),
                    expected_version=0,
                )
            async with store.transaction() as tx:
                every = await tx.list_jobs()
                assert [j.id for j in every] == ["l4", "l3", "l2", "l1", "l0"]
                alice = await tx.list_jobs(owner="alice")
                assert [j.id for j in alice] == ["l4", "l2", "l0"]
                queued = await tx.list_jobs(owner="alice", status=JobStatus.QUEUED)
                assert [j.id for j in queued] == ["l4", "l2"]
                page = await tx.list_jobs(limit=2)
                assert [j.id for j in page] == ["l4", "l3"]
                rest = await tx.list_jobs(limit=2, before=page[-1].created_at)
                assert [j.id for j in rest] == ["l2", "l1"]
                assert await tx.list_jobs(owner="nobody") == []

        self.run(body)

    def test_put_result_once(self) -> None:
        async def body(store: Store) -> None:
            first = JobResult(job_id="r1", svg="<svg/>", metadata={"model": "m"}, created_at=T0)
            second = JobResult(job_id="r1", svg="<svg>other</svg>", created_at=T0)
            async with store.transaction() as tx:
                assert await tx.get_result("r1") is None
                assert await tx.put_result(first) == first
            async with store.transaction() as tx:
                assert await tx.put_result(second) == first
                assert await tx.get_result("r1") == first

        self.run(body)

    # --- idempotency --------------------------------------------------------------

    def test_claim_idempotency_live_expired_and_prune(self) -> None:
        async def body(store: Store) -> None:
            one = _record("key", "job-1", ttl=60)
            async with store.transaction() as tx:
                assert await tx.claim_idempotency(one, now=T0) == one
            async with store.transaction() as tx:
                other = _record("key", "job-2", ttl=60, at=30)
                live = await tx.claim_idempotency(other, now=T0 + timedelta(seconds=30))
                assert live == one, "a live record wins"
                later = _record("key", "job-3", ttl=60, at=60)
                took = await tx.claim_idempotency(later, now=T0 + timedelta(seconds=60))
                assert took == later, "a record expired at now is replaced"
                await tx.claim_idempotency(_record("k2", "job-4", ttl=10), now=T0)
                await tx.claim_idempotency(_record("k3", "job-5", ttl=20), now=T0)
            async with store.transaction() as tx:
                assert await tx.prune_idempotency(T0 + timedelta(seconds=5), limit=10) == 0
                assert await tx.prune_idempotency(T0 + timedelta(seconds=25), limit=1) == 1
                assert await tx.prune_idempotency(T0 + timedelta(seconds=25), limit=10) == 1
                assert await tx.prune_idempotency(T0 + timedelta(seconds=25), limit=10) == 0
                again = _record("k2", "job-6", ttl=10, at=25)
                assert await tx.claim_idempotency(again, now=T0 + timedelta(seconds=25)) == again

        self.run(body)

    def test_claim_idempotency_concurrent_one_winner(self) -> None:
        async def body(store: Store) -> None:
            async def claimer(n: int) -> str:
                async with store.transaction() as tx:
                    got = await tx.claim_idempotency(_record("race", f"job-{n}"), now=T0)
                    await asyncio.sleep(0)
                    return got.job_id

            winners = set(await asyncio.gather(*(claimer(n) for n in range(self.concurrency))))
            assert len(winners) == 1, winners

        self.run(body)

    # --- ledger -------------------------------------------------------------------

    def test_lock_account_create_and_exists(self) -> None:
        async def body(store: Store) -> None:
            async with store.transaction() as tx:
                assert await tx.lock_account("carol") is False
                assert await tx.lock_account("carol", create=True) is True
                assert await tx.lock_account("carol") is True
                assert await tx.lock_account("carol", create=True) is True
                assert await tx.balance("carol") == 0

        self.run(body)

    def test_insert_entry_deduplicates_kind_and_ref(self) -> None:
        async def body(store: Store) -> None:
            async with store.transaction() as tx:
                await tx.lock_account("dave", create=True)
                grant = entry("dave", G, 10, ref="ext")
                assert await tx.insert_entry(grant) == grant
                charge = entry("dave", C, -3, ref="job-1", seconds=1)
                assert await tx.insert_entry(charge) == charge
            async with store.transaction() as tx:
                assert await tx.insert_entry(entry("dave", G, 99, ref="ext")) == grant
                assert await tx.insert_entry(entry("dave", C, -7, ref="job-1")) == charge
                refund = entry("dave", R, 3, ref="job-1", seconds=2)
                assert await tx.insert_entry(refund) == refund, "same ref, other kind is new"
                for _ in range(2):  # entries without ref are never deduplicated
                    await tx.insert_entry(entry("dave", EntryKind.ADJUSTMENT, 1, seconds=3))
                assert await tx.find_entry(G, "ext") == grant
                assert await tx.find_entry(C, "job-1") == charge
                assert await tx.find_entry(C, "nope") is None
                assert await tx.balance("dave") == 12
                listed = await tx.entries("dave")
                assert sum(e.amount for e in listed) == 12
                assert len(listed) == 5

        self.run(body)

    def test_balance_sums_and_windows(self) -> None:
        async def body(store: Store) -> None:
            async with store.transaction() as tx:
                await tx.lock_account("erin", create=True)
                await tx.lock_account("frank", create=True)
                await tx.insert_entry(entry("erin", G, 100, ref="g1"))
                await tx.insert_entry(entry("frank", G, 7, ref="g2"))
                await tx.insert_entry(entry("erin", C, -10, ref="j1", seconds=10))
                await tx.insert_entry(entry("erin", C, -20, ref="j2", seconds=20))
                await tx.insert_entry(entry("erin", R, 10, ref="j1", seconds=30))
                await tx.insert_entry(entry("erin", EntryKind.RESERVE, -5, ref="j3", seconds=40))
                await tx.insert_entry(entry("erin", EntryKind.RESERVE, -6, ref="j4", seconds=41))
                await tx.insert_entry(entry("erin", EntryKind.RELEASE, 6, ref="j4", seconds=42))
            async with store.transaction() as tx:
                assert await tx.balance("erin") == 75
                assert await tx.balance("frank") == 7
                assert await tx.balance("nobody") == 0
                window = {"since": T0 + timedelta(seconds=10), "until": T0 + timedelta(seconds=30)}
                assert await tx.sum_entries("erin", [C], **window) == -30
                assert await tx.sum_entries("erin", [C, R], **window) == -30, "until is exclusive"
                wide = {"since": T0, "until": T0 + timedelta(seconds=60)}
                assert await tx.sum_entries("erin", [C, R], **wide) == -20
                assert await tx.sum_entries("erin", [], **wide) == 0
                assert await tx.usage("erin", **wide) == 25, "refunded/released spend is given back"
                assert await tx.usage("erin", **window) == 20
                assert await tx.usage("frank", **wide) == 0

        self.run(body)

    def test_entries_newest_first_and_paging(self) -> None:
        async def body(store: Store) -> None:
            async with store.transaction() as tx:
                await tx.lock_account("gina", create=True)
                for i in range(5):
                    await tx.insert_entry(entry("gina", G, i + 1, ref=f"e{i}", seconds=i))
            async with store.transaction() as tx:
                newest = await tx.entries("gina", limit=2)
                assert [e.ref for e in newest] == ["e4", "e3"]
                older = await tx.entries("gina", limit=10, before=newest[-1].created_at)
                assert [e.ref for e in older] == ["e2", "e1", "e0"]
                assert await tx.entries("nobody") == []

        self.run(body)

    def test_paging_cursor_keeps_rows_with_equal_timestamps(self) -> None:
        async def body(store: Store) -> None:
            async with store.transaction() as tx:
                await tx.lock_account("ivy", create=True)
                for i in range(7):  # seven entries and jobs in the same microsecond
                    await tx.insert_entry(entry("ivy", G, 1, ref=f"same-{i}"))
                    await tx.insert_job(job(f"same-{i}", owner="ivy"))
            async with store.transaction() as tx:
                seen: list[str] = []
                page = await tx.entries("ivy", limit=3)
                while page:
                    seen += [e.id for e in page]
                    last = page[-1]
                    page = await tx.entries(
                        "ivy", limit=3, before=last.created_at, before_id=last.id
                    )
                every = await tx.entries("ivy", limit=100)
                assert seen == [e.id for e in every], "paging lost or repeated entries"
                assert len(seen) == 7
                assert await tx.entries("ivy", before=T0) == [], "before alone is strict"
                ids: list[str] = []
                jobs = await tx.list_jobs(owner="ivy", limit=2)
                while jobs:
                    ids += [j.id for j in jobs]
                    jobs = await tx.list_jobs(
                        owner="ivy", limit=2, before=jobs[-1].created_at, before_id=jobs[-1].id
                    )
                assert ids == [f"same-{i}" for i in reversed(range(7))]

        self.run(body)

    def test_lock_account_serializes_read_modify_write(self) -> None:
        async def body(store: Store) -> None:
            async with store.transaction() as tx:
                await tx.lock_account("hank", create=True)

            async def topper(n: int) -> None:
                # Grant 1 only while the balance is below 5: without a real lock,
                # concurrent transactions all read 4 and overshoot.
                async with store.transaction() as tx:
                    assert await tx.lock_account("hank")
                    current = await tx.balance("hank")
                    await asyncio.sleep(0)
                    if current < 5:
                        await tx.insert_entry(entry("hank", G, 1, seconds=n))

            await asyncio.gather(*(topper(n) for n in range(self.concurrency)))
            async with store.transaction() as tx:
                assert await tx.balance("hank") == 5

        self.run(body)
