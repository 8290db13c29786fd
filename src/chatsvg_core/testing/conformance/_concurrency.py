"""Concurrency: many tasks (and threads, where declared) on one owner and one queue."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any, ClassVar, Literal, TypeVar

from chatsvg_core.errors import (
    DailyCapExceeded,
    InsufficientCredits,
    InvalidTransition,
    JobNotFound,
    LedgerError,
    RefundWithoutCharge,
)
from chatsvg_core.jobs import JobErrorInfo, JobStatus
from chatsvg_core.ledger import DayBoundary, Ledger, LedgerPolicy, charge, refund
from chatsvg_core.storage import (
    EntryKind,
    Store,
    claim_next,
    complete_job,
    expire_leases,
    fail_job,
    heartbeat_job,
)
from chatsvg_core.testing._clock import FakeClock
from chatsvg_core.testing.conformance._base import T0, Capability, ConformanceBase, job
from chatsvg_core.testing.conformance._ledger import check_ledger_invariants

__all__ = ["ConcurrencyConformance"]

T = TypeVar("T")
OWNER = "crowd"
PRICE = 4


def _funds(n: int) -> int:
    """Enough for half of the 2n jobs: races always reach the balance limit."""
    return PRICE * n


def _cap(n: int) -> int:
    """Less than the funds: races reach the daily cap too."""
    return PRICE * max(n * 2 // 3, 1)


LEASE = timedelta(seconds=10)


Mode = Literal["tasks", "threads", "processes"]
_ERROR = JobErrorInfo(code="x", type="X", message="refused", transient=False)


# The workers are module-level functions so that a process pool can pickle them.


async def _ledger_worker(store: Store, k: int, n: int) -> tuple[int, int]:
    refs = [f"job-{i}" for i in range(2 * n)]
    policy = LedgerPolicy(daily_cap=_cap(n), day=DayBoundary())
    ledger = Ledger(store, clock=FakeClock(T0), policy=policy)
    charged = refused = 0
    for i in range(k, len(refs), n):
        # Each worker charges its own jobs and repeats a neighbour's charge,
        # so every job is charged from two places at once.
        for ref in (refs[i], refs[(i + 1) % len(refs)]):
            try:
                await ledger.charge(OWNER, PRICE, ref=ref)
                charged += 1
            except (InsufficientCredits, DailyCapExceeded):
                refused += 1
            await asyncio.sleep(0)
        if i % 3 == 0:
            for _ in range(2):  # a refund repeated, as a retried worker would
                with contextlib.suppress(RefundWithoutCharge):
                    await ledger.refund(refs[i])
    return charged, refused


async def _pipeline_worker(store: Store, k: int, cap: int) -> None:
    while True:
        # Claim + charge as one step; no credits → FAILED in the same step.
        async with store.transaction() as tx:
            got = await claim_next(tx, now=T0, worker_id=f"w{k}", lease=LEASE)
            if got is None:
                return
            token = got.lease_token
            assert token is not None
            try:
                await charge(tx, got.owner, PRICE, ref=got.id, now=T0, daily_cap=cap)
                charged = True
            except (InsufficientCredits, DailyCapExceeded):
                await fail_job(tx, got.id, now=T0, token=token, error=_ERROR)
                charged = False
        await asyncio.sleep(0)
        if not charged:
            continue
        # Fail + refund as one step for every third job; the rest succeed.
        async with store.transaction() as tx:
            if int(got.id[2:]) % 3 == 0:
                await fail_job(tx, got.id, now=T0, token=token, error=_ERROR)
                await refund(tx, got.id, now=T0)
            else:
                await complete_job(tx, got.id, token=token, now=T0, svg="<svg/>")


async def _claim_worker(store: Store, k: int, now_s: int, die: bool) -> list[tuple[str, int, int]]:
    """Claim until the queue is empty; with ``die``, drop every third job unfinished."""
    now = T0 + timedelta(seconds=now_s)
    taken: list[tuple[str, int, int]] = []
    while True:
        async with store.transaction() as tx:
            got = await claim_next(tx, now=now, worker_id=f"w{k}", lease=LEASE)
        if got is None:
            return taken
        assert got.lease_token is not None
        taken.append((got.id, got.lease_token, now_s))
        await asyncio.sleep(0)
        if die and int(got.id[2:]) % 3 == 0:
            continue  # this worker "crashes" holding the lease
        async with store.transaction() as tx:
            await complete_job(tx, got.id, token=got.lease_token, now=now, svg=f"<svg id='w{k}'/>")


async def _expire_worker(store: Store, k: int, limit: int) -> list[str]:
    async with store.transaction() as tx:
        done = await expire_leases(tx, now=T0 + LEASE, limit=limit)
        return [j.id for j in done]


def _in_process(
    factory: Callable[[], AbstractAsyncContextManager[Store]],
    work: Callable[..., Awaitable[T]],
    k: int,
    args: tuple[Any, ...],
) -> T:
    async def main() -> T:
        async with factory() as store:
            return await work(store, k, *args)

    return asyncio.run(main())


class ConcurrencyConformance(ConformanceBase):
    """Charges, refunds and claims racing on one owner and one queue keep every invariant.

    Each race runs as tasks on one store; with ``Capability.THREADS`` also
    from threads (each with its own loop and a store from ``open_peer``), and
    with ``Capability.PROCESSES`` from processes (stores from
    ``peer_factory``).
    """

    processes: ClassVar[int] = 2
    """Worker processes in the process races (each runs several workers in turn)."""

    async def _parallel(
        self, store: Store, mode: Mode, work: Callable[..., Awaitable[T]], *args: Any
    ) -> list[T]:
        n = self.concurrency
        if mode == "tasks":
            return list(await asyncio.gather(*(work(store, k, *args) for k in range(n))))
        if mode == "threads":

            async def in_thread(k: int) -> T:
                async with self.open_peer(store) as peer:
                    result: T = await work(peer, k, *args)
                    return result

            def run_threads() -> list[T]:
                with ThreadPoolExecutor(max_workers=n) as pool:
                    futures = [pool.submit(asyncio.run, in_thread(k)) for k in range(n)]
                    return [f.result() for f in futures]

            return await asyncio.to_thread(run_threads)
        factory = self.peer_factory(store)
        pool = self.__dict__.get("_pool")
        if pool is None:
            # One pool per test: spawning interpreters is the slow part.
            context = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(min(n, self.processes), mp_context=context)
            self.__dict__["_pool"] = pool

        def run_processes() -> list[T]:
            futures = [pool.submit(_in_process, factory, work, k, args) for k in range(n)]
            return [f.result() for f in futures]

        return await asyncio.to_thread(run_processes)

    def run(self, body: Callable[[Store], Awaitable[T]]) -> T:
        """As :meth:`ConformanceBase.run`, then stop the test's worker processes, if any."""
        try:
            return super().run(body)
        finally:
            pool = self.__dict__.pop("_pool", None)
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    def _mode(self, mode: Mode) -> Mode:
        if mode == "threads":
            self.needs(Capability.THREADS)
        elif mode == "processes":
            self.needs(Capability.PROCESSES)
        return mode

    # --- ledger -----------------------------------------------------------------

    def _ledger_race(self, mode: Mode) -> None:
        n = self.concurrency
        refs = {f"job-{i}" for i in range(2 * n)}
        funds, cap = _funds(n), _cap(n)

        async def body(store: Store) -> None:
            await Ledger(store, clock=FakeClock(T0)).grant(OWNER, funds, external_id="funding")
            results = await self._parallel(store, mode, _ledger_worker, n)
            assert sum(r for _, r in results) > 0, "the race never reached a limit"
            async with store.transaction() as tx:
                entries = await check_ledger_invariants(tx, (OWNER,))
                start, end = DayBoundary().window(T0)
                used = await tx.usage(OWNER, since=start, until=end)
                assert used <= cap, f"daily cap {cap} exceeded under concurrency: {used}"
                charges = [e for e in entries if e.ref in refs and e.kind is EntryKind.CHARGE]
                refunds = [e for e in entries if e.ref in refs and e.kind is EntryKind.REFUND]
                assert charges, "no charge went through"
                assert await tx.balance(OWNER) == funds - PRICE * (len(charges) - len(refunds))

        self.run(body)

    def test_concurrent_charges_and_refunds_on_one_owner(self) -> None:
        self._ledger_race(self._mode("tasks"))

    def test_concurrent_charges_and_refunds_on_one_owner_threads(self) -> None:
        self._ledger_race(self._mode("threads"))

    def test_concurrent_charges_and_refunds_on_one_owner_processes(self) -> None:
        self._ledger_race(self._mode("processes"))

    def test_concurrent_grants_with_one_external_id(self) -> None:
        async def work(store: Store, k: int) -> str:
            ledger = Ledger(store, clock=FakeClock(T0))
            try:
                return (await ledger.grant(f"owner-{k % 2}", 10, external_id="pay-x")).owner
            except LedgerError as exc:
                return type(exc).__name__

        async def body(store: Store) -> None:
            got = await self._parallel(store, "tasks", work)
            winners = {g for g in got if g.startswith("owner-")}
            assert len(winners) == 1, f"one external id granted to several owners: {got}"
            async with store.transaction() as tx:
                total = await tx.balance("owner-0") + await tx.balance("owner-1")
            assert total == 10

        self.run(body)

    # --- claim + charge, fail + refund -------------------------------------------

    def _pipeline_race(self, mode: Mode) -> None:
        owners = ("payer-a", "payer-b")
        ids = [f"p-{i:03d}" for i in range(2 * self.concurrency)]

        async def body(store: Store) -> None:
            boot = Ledger(store, clock=FakeClock(T0))
            for owner in owners:
                await boot.grant(owner, _funds(self.concurrency) // 2, external_id=f"fund-{owner}")
            async with store.transaction() as tx:
                for i, job_id in enumerate(ids):
                    await tx.insert_job(job(job_id, owner=owners[i % 2], now=T0))
            await self._parallel(store, mode, _pipeline_worker, _cap(self.concurrency))
            async with store.transaction() as tx:
                await check_ledger_invariants(tx, owners)
                outcomes = set()
                for job_id in ids:
                    final = await tx.get_job(job_id)
                    assert final is not None
                    charged = await tx.find_entry(EntryKind.CHARGE, job_id) is not None
                    refunded = await tx.find_entry(EntryKind.REFUND, job_id) is not None
                    if final.status is JobStatus.SUCCEEDED:
                        assert (charged, refunded) == (True, False), f"{job_id}: succeeded"
                    else:
                        assert final.status is JobStatus.FAILED, final
                        assert charged == refunded, f"{job_id}: failed needs both or neither"
                    outcomes.add((final.status, charged))
            assert (JobStatus.FAILED, False) in outcomes, "the race never ran out of credits"

        self.run(body)

    def test_claim_with_charge_and_fail_with_refund_under_concurrency(self) -> None:
        self._pipeline_race(self._mode("tasks"))

    def test_claim_with_charge_and_fail_with_refund_under_concurrency_threads(self) -> None:
        self._pipeline_race(self._mode("threads"))

    def test_claim_with_charge_and_fail_with_refund_under_concurrency_processes(self) -> None:
        self._pipeline_race(self._mode("processes"))

    # --- queue ------------------------------------------------------------------

    def _queue_race(self, mode: Mode) -> None:
        count = 2 * self.concurrency
        ids = [f"q-{i:03d}" for i in range(count)]

        async def body(store: Store) -> None:
            async with store.transaction() as tx:
                for i in ids:
                    await tx.insert_job(job(i, now=T0 - timedelta(seconds=1)))
            first = await self._parallel(store, mode, _claim_worker, 0, True)
            claims = [c for part in first for c in part]
            assert sorted(c[0] for c in claims) == ids, "each job claimed exactly once"

            # Several recovery passes race; each lapsed lease is expired once.
            passes = await self._parallel(store, mode, _expire_worker, count)
            expired = [i for part in passes for i in part]
            dead = [i for i in ids if int(i[2:]) % 3 == 0]
            assert sorted(expired) == dead

            for job_id in dead:  # the crashed workers wake up: every write refused
                for op in ("heartbeat", "complete"):
                    try:
                        async with store.transaction() as tx:
                            if op == "heartbeat":
                                await heartbeat_job(tx, job_id, token=1, now=T0, lease=LEASE)
                            else:
                                await complete_job(tx, job_id, token=1, now=T0, svg="<svg/>")
                    except InvalidTransition:  # StaleLease once re-claimed
                        continue
                    raise AssertionError(f"a stale {op} of {job_id} was accepted")

            second = await self._parallel(store, mode, _claim_worker, LEASE.seconds, False)
            again = [c for part in second for c in part]
            assert sorted(c[0] for c in again) == dead, "each re-queued job claimed once more"
            async with store.transaction() as tx:
                for i in ids:
                    final = await tx.get_job(i)
                    if final is None:
                        raise JobNotFound(i, job_id=i)
                    assert final.status is JobStatus.SUCCEEDED, final
                    assert final.attempt == (2 if i in dead else 1)
                    result = await tx.get_result(i)
                    assert result is not None
                    assert result.svg == f"<svg id='{final.worker_id}'/>"
            # Leases never overlap: a job's next claim starts when the last one ended.
            for i in dead:
                times = sorted((tok, at) for j, tok, at in claims + again if j == i)
                assert [t for t, _ in times] == [1, 2]
                assert times[1][1] >= times[0][1] + LEASE.seconds

        self.run(body)

    def test_workers_claim_one_queue_without_overlap(self) -> None:
        self._queue_race(self._mode("tasks"))

    def test_workers_claim_one_queue_without_overlap_threads(self) -> None:
        self._queue_race(self._mode("threads"))

    def test_workers_claim_one_queue_without_overlap_processes(self) -> None:
        self._queue_race(self._mode("processes"))
