"""The per-process lease keeper: one heartbeat statement per interval, lost leases stop work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from chatsvg_core.engine import Engine, EngineEvent, EventKind
from chatsvg_core.generate import GenerationRequest, ProviderOutput
from chatsvg_core.jobs import JobStatus
from chatsvg_core.ledger import Ledger
from chatsvg_core.storage import Store, claim_job, expire_leases
from chatsvg_core.storage.memory import MemoryStore
from chatsvg_core.storage.sqlite import SQLiteStore

from ._support import SVG

IN_FLIGHT = 40
EVERY = 0.05


class GatedProvider:
    """Answers only when the test opens the gate (a model call that takes a while)."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started = 0
        self.wanted = 0
        self.all_started = asyncio.Event()
        self.cancelled = 0

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        self.started += 1
        if self.started >= self.wanted:
            self.all_started.set()
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return ProviderOutput(text=SVG, model="gated", provider=self.name, latency_s=0.0)


class CountingStore:
    """Counts the transactions a store opens (each heartbeat round is one)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.transactions = 0

    def transaction(self):  # type: ignore[no-untyped-def]
        self.transactions += 1
        return self.inner.transaction()

    async def aclose(self) -> None:
        await self.inner.aclose()


@asynccontextmanager
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await SQLiteStore.open(tmp_path / "leases.db", synchronous="normal")
    try:
        yield store
    finally:
        await store.aclose()


@asynccontextmanager
async def memory_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = MemoryStore()
    try:
        yield store
    finally:
        await store.aclose()


OPENERS = [sqlite_store, memory_store]


@pytest.mark.parametrize("opener", OPENERS, ids=["sqlite", "memory"])
async def test_many_leases_cost_one_transaction_per_interval(tmp_path: Path, opener) -> None:  # type: ignore[no-untyped-def]
    async with opener(tmp_path) as inner:
        store = CountingStore(inner)
        provider = GatedProvider()
        provider.wanted = IN_FLIGHT
        engine = Engine(
            store,  # type: ignore[arg-type]
            None,
            provider,
            lease=timedelta(seconds=2),
            heartbeat_every=EVERY,
        )
        await Ledger(inner).grant("alice", 10 * IN_FLIGHT)
        jobs = [
            (await engine.submit("alice", f"k{i}", {"prompt": f"cat {i}"})).job
            for i in range(IN_FLIGHT)
        ]
        runs = [asyncio.create_task(engine.process(j.id, f"w{i}")) for i, j in enumerate(jobs)]
        await asyncio.wait_for(provider.all_started.wait(), 10)
        async with inner.transaction() as tx:
            before = {j.id: (await tx.get_job(j.id)) for j in jobs}
        start = store.transactions
        await asyncio.sleep(EVERY * 10)
        rounds = store.transactions - start
        keeper = engine._keeper()
        assert keeper.held == IN_FLIGHT
        # One transaction per interval for all forty leases, not forty.
        assert 3 <= rounds <= 12, rounds
        async with inner.transaction() as tx:
            for job_id, was in before.items():
                now = await tx.get_job(job_id)
                assert was is not None and now is not None
                assert now.lease_expires_at is not None and was.lease_expires_at is not None
                assert now.lease_expires_at > was.lease_expires_at
                assert now.lease_token == was.lease_token
        provider.gate.set()
        done = await asyncio.gather(*runs)
        assert all(j is not None and j.status is JobStatus.SUCCEEDED for j in done)
        assert keeper.held == 0
        await asyncio.sleep(EVERY * 3)
        idle = store.transactions
        await asyncio.sleep(EVERY * 3)
        assert store.transactions == idle, "the keeper kept writing with no lease held"


@pytest.mark.parametrize("opener", OPENERS, ids=["sqlite", "memory"])
async def test_a_lost_lease_stops_the_worker_and_others_carry_on(tmp_path: Path, opener) -> None:  # type: ignore[no-untyped-def]
    async with opener(tmp_path) as store:
        provider = GatedProvider()
        provider.wanted = 2
        events: list[EngineEvent] = []
        lease = timedelta(seconds=0.2)
        engine = Engine(
            store, None, provider, lease=lease, heartbeat_every=EVERY, on_event=events.append
        )
        await Ledger(store).grant("alice", 100)
        a = (await engine.submit("alice", "a", {"prompt": "a cat"})).job
        b = (await engine.submit("alice", "b", {"prompt": "a dog"})).job
        run_a = asyncio.create_task(engine.process(a.id, "w1"))
        run_b = asyncio.create_task(engine.process(b.id, "w1"))
        await asyncio.wait_for(provider.all_started.wait(), 10)
        # Recovery elsewhere takes job a back (as if its lease had lapsed) and
        # another worker claims it: the keeper's next round must see token 2.
        far = engine.clock.now() + timedelta(hours=1)
        async with store.transaction() as tx:
            expired = await expire_leases(tx, now=far)
        assert {j.id for j in expired} == {a.id, b.id}
        async with store.transaction() as tx:
            taken = await claim_job(tx, a.id, now=far, worker_id="w2", lease=timedelta(hours=2))
            # b is put back to RUNNING under token 2 too, for a second worker.
            await claim_job(tx, b.id, now=far, worker_id="w3", lease=timedelta(hours=2))
        assert taken.lease_token == 2
        assert await asyncio.wait_for(run_a, 5) is None
        assert await asyncio.wait_for(run_b, 5) is None
        assert provider.cancelled == 2
        lost = [e.job_id for e in events if e.kind is EventKind.LEASE_LOST]
        assert sorted(lost) == sorted([a.id, b.id])
        async with store.transaction() as tx:
            now_a = await tx.get_job(a.id)
        # The stale worker wrote nothing: the new holder's lease is untouched.
        assert now_a is not None and now_a.lease_token == 2 and now_a.worker_id == "w2"
        assert now_a.version == taken.version
        assert engine._keeper().held == 0


async def test_short_jobs_one_after_another_reuse_one_timer(tmp_path: Path) -> None:
    # The keeper's timer stays armed when the last lease is released, so a
    # worker running short jobs one at a time arms one per interval, not one
    # per job; when it fires with nothing held it ends there and no round runs.
    async with memory_store(tmp_path) as inner:
        store = CountingStore(inner)
        engine = Engine(store, None, _Instant(), heartbeat_every=3600)
        await Ledger(store).grant("alice", 100)
        for i in range(3):
            await engine.submit("alice", f"k{i}", {"prompt": f"a cat {i}"})
        assert await engine.process_next("w") is not None
        keeper = engine._keeper()
        timer = keeper._timer
        assert timer is not None and not timer.cancelled() and keeper.held == 0
        assert await engine.process_next("w") is not None
        assert await engine.process_next("w") is not None
        assert keeper._timer is timer and not timer.cancelled()
        before = store.transactions
        keeper._wake()  # the timer firing with no lease held
        assert keeper._timer is None and keeper._task is None
        await asyncio.sleep(0)
        assert store.transactions == before and keeper.rounds == 0


def test_a_keeper_left_on_a_closed_loop_is_forgotten(tmp_path: Path) -> None:
    # Its armed timer holds the loop it was armed on: the engine drops keepers
    # of closed loops when a new loop asks for one, so repeated asyncio.run()
    # calls do not pile up closed loops.
    store = MemoryStore()
    engine = Engine(store, None, _Instant(), heartbeat_every=3600)

    async def one_job(i: int) -> None:
        await Ledger(store).grant("alice", 10)
        await engine.submit("alice", f"k{i}", {"prompt": "a cat"})
        assert await engine.process_next("w") is not None

    for i in range(3):
        asyncio.run(one_job(i))
        assert len(engine._keepers) == 1


class _Instant:
    name = "instant"

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        return ProviderOutput(text=SVG, model="instant", provider=self.name, latency_s=0.0)
