"""Concurrency: many tasks (and threads, where declared) on one owner and one queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TypeVar

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
FUNDS = 60
CAP = 40
LEASE = timedelta(seconds=10)


class ConcurrencyConformance(ConformanceBase):
    """Charges, refunds and claims racing on one owner and one queue keep every invariant."""

    async def _parallel(
        self, store: Store, threads: bool, work: Callable[[Store, int], Awaitable[T]]
    ) -> list[T]:
        n = self.concurrency
        if not threads:
            return list(await asyncio.gather(*(work(store, k) for k in range(n))))

        async def in_thread(k: int) -> T:
            async with self.open_peer(store) as peer:
                return await work(peer, k)

        def run_all() -> list[T]:
            with ThreadPoolExecutor(max_workers=n) as pool:
                futures = [pool.submit(asyncio.run, in_thread(k)) for k in range(n)]
                return [f.result() for f in futures]

        return await asyncio.to_thread(run_all)

    # --- ledger -----------------------------------------------------------------

    def _ledger_race(self, threads: bool) -> None:
        n = self.concurrency
        refs = [f"job-{i}" for i in range(2 * n)]
        policy = LedgerPolicy(daily_cap=CAP, day=DayBoundary())

        async def work(store: Store, k: int) -> tuple[int, int]:
            ledger = Ledger(store, clock=FakeClock(T0), policy=policy)
            charged = refused = 0
            for i in range(k, len(refs), n):
                # Each worker charges its own jobs and repeats a neighbour's
                # charge, so every job is charged from two places at once.
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

        async def body(store: Store) -> None:
            await Ledger(store, clock=FakeClock(T0)).grant(OWNER, FUNDS, external_id="funding")
            results = await self._parallel(store, threads, work)
            assert sum(r for _, r in results) > 0, "the race never reached a limit"
            async with store.transaction() as tx:
                entries = await check_ledger_invariants(tx, (OWNER,))
                start, end = DayBoundary().window(T0)
                used = await tx.usage(OWNER, since=start, until=end)
                assert used <= CAP, f"daily cap {CAP} exceeded under concurrency: {used}"
                charges = [e for e in entries if e.ref in refs and e.kind.value == "charge"]
                refunds = [e for e in entries if e.ref in refs and e.kind.value == "refund"]
                assert charges, "no charge went through"
                assert await tx.balance(OWNER) == FUNDS - PRICE * (len(charges) - len(refunds))

        self.run(body)

    def test_concurrent_charges_and_refunds_on_one_owner(self) -> None:
        self._ledger_race(threads=False)

    def test_concurrent_charges_and_refunds_on_one_owner_threads(self) -> None:
        self.needs(Capability.THREADS)
        self._ledger_race(threads=True)

    def test_concurrent_grants_with_one_external_id(self) -> None:
        async def work(store: Store, k: int) -> str:
            ledger = Ledger(store, clock=FakeClock(T0))
            try:
                return (await ledger.grant(f"owner-{k % 2}", 10, external_id="pay-x")).owner
            except LedgerError as exc:
                return type(exc).__name__

        async def body(store: Store) -> None:
            got = await self._parallel(store, False, work)
            winners = {g for g in got if g.startswith("owner-")}
            assert len(winners) == 1, f"one external id granted to several owners: {got}"
            async with store.transaction() as tx:
                total = await tx.balance("owner-0") + await tx.balance("owner-1")
            assert total == 10

        self.run(body)

    # --- claim + charge, fail + refund -------------------------------------------

    def _pipeline_race(self, threads: bool) -> None:
        n = self.concurrency
        owners = ("payer-a", "payer-b")
        ids = [f"p-{i:03d}" for i in range(2 * n)]
        error = JobErrorInfo(code="x", type="X", message="refused", transient=False)

        async def worker(store: Store, k: int) -> None:
            while True:
                # Claim + charge as one step; no credits → FAILED in the same step.
                async with store.transaction() as tx:
                    got = await claim_next(tx, now=T0, worker_id=f"w{k}", lease=LEASE)
                    if got is None:
                        return
                    token = got.lease_token
                    assert token is not None
                    try:
                        await charge(tx, got.owner, PRICE, ref=got.id, now=T0, daily_cap=CAP)
                        charged = True
                    except (InsufficientCredits, DailyCapExceeded):
                        await fail_job(tx, got.id, now=T0, token=token, error=error)
                        charged = False
                await asyncio.sleep(0)
                if not charged:
                    continue
                # Fail + refund as one step for every third job; the rest succeed.
                async with store.transaction() as tx:
                    if int(got.id[2:]) % 3 == 0:
                        await fail_job(tx, got.id, now=T0, token=token, error=error)
                        await refund(tx, got.id, now=T0)
                    else:
                        await complete_job(tx, got.id, token=token, now=T0, svg="<svg/>")

        async def body(store: Store) -> None:
            boot = Ledger(store, clock=FakeClock(T0))
            for owner in owners:
                await boot.grant(owner, FUNDS // 2, external_id=f"fund-{owner}")
            async with store.transaction() as tx:
                for i, job_id in enumerate(ids):
                    await tx.insert_job(job(job_id, owner=owners[i % 2], now=T0))
            await self._parallel(store, threads, worker)
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
        self._pipeline_race(threads=False)

    def test_claim_with_charge_and_fail_with_refund_under_concurrency_threads(self) -> None:
        self.needs(Capability.THREADS)
        self._pipeline_race(threads=True)

    # --- queue ------------------------------------------------------------------

    def _queue_race(self, threads: bool) -> None:
        n = self.concurrency
        count = 2 * n
        ids = [f"q-{i:03d}" for i in range(count)]

        async def phase(store: Store, k: int, now_s: int, die: bool) -> list[tuple[str, int, int]]:
            """Claim until the queue is empty; on the first pass workers drop every 3rd job."""
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
                    await complete_job(
                        tx, got.id, token=got.lease_token, now=now, svg=f"<svg id='w{k}'/>"
                    )

        async def body(store: Store) -> None:
            async with store.transaction() as tx:
                for i in ids:
                    await tx.insert_job(job(i, now=T0 - timedelta(seconds=1)))
            first = await self._parallel(
                store, threads, lambda s, k: phase(s, k, now_s=0, die=True)
            )
            claims = [c for part in first for c in part]
            assert sorted(c[0] for c in claims) == ids, "each job claimed exactly once"

            async def expire(store: Store, k: int) -> list[str]:
                async with store.transaction() as tx:
                    done = await expire_leases(tx, now=T0 + LEASE, limit=count)
                    return [j.id for j in done]

            # Several recovery passes race; each lapsed lease is expired once.
            expired = [i for part in await self._parallel(store, threads, expire) for i in part]
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

            second = await self._parallel(
                store, threads, lambda s, k: phase(s, k, now_s=LEASE.seconds, die=False)
            )
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
        self._queue_race(threads=False)

    def test_workers_claim_one_queue_without_overlap_threads(self) -> None:
        self.needs(Capability.THREADS)
        self._queue_race(threads=True)
