"""Retention: old terminal jobs go in bounded batches; ledger entries and exactly-once stay."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from chatsvg_core import errors
from chatsvg_core.engine import Engine
from chatsvg_core.ledger import Ledger, charge, refund
from chatsvg_core.retry import Jitter, RetryPolicy
from chatsvg_core.storage import EntryKind, Store
from chatsvg_core.storage.memory import MemoryStore
from chatsvg_core.testing import FakeClock

from ._support import ScriptedProvider

POLICY = RetryPolicy(max_attempts=1, initial_delay=1.0, max_delay=1.0, jitter=Jitter.NONE)


@asynccontextmanager
async def backend(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Store]:
    if kind == "memory":
        yield MemoryStore()
        return
    if kind == "sqlite":
        from chatsvg_core.storage.sqlite import SQLiteStore

        store = await SQLiteStore.open(tmp_path / "purge.db")
        try:
            yield store
        finally:
            await store.aclose()
        return
    import psycopg

    from chatsvg_core.storage.postgres import PostgresStore

    url = request.getfixturevalue("postgres_url")
    schema = f"chatsvg_purge_{secrets.token_hex(4)}"
    pg = await PostgresStore.open(url, schema=schema)
    try:
        yield pg
    finally:
        await pg.aclose()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


async def ids(store: Store) -> set[str]:
    async with store.transaction() as tx:
        return {j.id for j in await tx.list_jobs(limit=1000)}


async def entries(store: Store) -> list[tuple[str, str | None, int]]:
    async with store.transaction() as tx:
        return sorted((e.kind.value, e.ref, e.amount) for e in await tx.entries("ann", limit=1000))


@pytest.mark.parametrize("kind", BACKENDS)
async def test_purge_removes_old_settled_jobs_in_batches_and_keeps_the_ledger(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with backend(kind, tmp_path, request) as store:
        clock = FakeClock()
        provider = ScriptedProvider(["ok", "ok", "ok", "permanent"])
        engine = Engine(
            store, None, provider, policy=POLICY, call_policy=POLICY, clock=clock,
            idempotency_ttl=timedelta(hours=1), heartbeat_every=3600,
        )  # fmt: skip
        ledger = Ledger(store, clock=clock)
        await ledger.grant("ann", 100)
        done = []
        for i in range(4):
            sub = await engine.submit("ann", f"k{i}" if i == 0 else None, {"prompt": f"a cat {i}"})
            await engine.process(sub.job.id, "w")
            done.append(sub.job.id)
        queued = (await engine.submit("ann", None, {"prompt": "still waiting"})).job.id
        before = await entries(store)
        clock.advance(3600 * 2)
        fresh = (await engine.submit("ann", None, {"prompt": "new"})).job.id
        await engine.process(fresh, "w")
        report = await engine.purge(timedelta(hours=1), batch_size=2)
        assert report.jobs == 4 and report.batches >= 2, report
        assert report.idempotency_records == 1
        left = await ids(store)
        assert left == {queued, fresh}, "only old terminal jobs go"
        assert await engine.result(done[0]) is None
        after = await entries(store)
        assert [e for e in after if e[1] in done] == [e for e in before if e[1] in done]
        # Exactly-once outlives the job: no second charge or refund for a purged id.
        async with store.transaction() as tx:
            again = await charge(tx, "ann", 2, ref=done[0], now=clock.now())
            assert again.created_at < clock.now() - timedelta(hours=1)
            back = await refund(tx, done[3], now=clock.now())
            assert back.created_at < clock.now() - timedelta(hours=1)
        assert await entries(store) == after
        assert (await engine.purge(timedelta(hours=1))).jobs == 0


async def test_a_live_key_or_unsettled_money_keeps_a_job() -> None:
    store = MemoryStore()
    clock = FakeClock()
    engine = Engine(
        store, None, ScriptedProvider(), policy=POLICY, call_policy=POLICY, clock=clock,
        heartbeat_every=3600, idempotency_ttl=timedelta(days=3),
    )  # fmt: skip
    await Ledger(store, clock=clock).grant("ann", 100)
    keyed = (await engine.submit("ann", "k", {"prompt": "a cat"})).job.id
    await engine.process(keyed, "w")
    plain = (await engine.submit("ann", None, {"prompt": "a dog"})).job.id
    await engine.process(plain, "w")
    # A FAILED job charged but not yet refunded (a store that splits jobs and ledger).
    async with store.transaction() as tx:
        job = await tx.get_job(plain)
        assert job is not None
        orphan = job.evolve(
            id="orphan", status="failed", result_ref=None,
            last_error={"code": "x", "type": "X", "message": "", "transient": False},
        )  # fmt: skip
        await tx.insert_job(orphan)
        await charge(tx, "ann", 2, ref="orphan", now=clock.now())
    clock.advance(86400 * 2)
    report = await engine.purge(timedelta(days=1))
    assert report.jobs == 1, "only the settled job without a live key goes"
    assert await ids(store) == {keyed, "orphan"}
    await engine.recover()  # refunds the orphan
    clock.advance(86400 * 2)  # the key expires
    report = await engine.purge(timedelta(days=1))
    assert (report.jobs, report.idempotency_records) == (2, 1)
    assert await ids(store) == set()
    async with store.transaction() as tx:
        assert await tx.find_entry(EntryKind.REFUND, "orphan") is not None


async def test_purge_checks_its_arguments() -> None:
    engine = Engine(MemoryStore(), None, ScriptedProvider())
    with pytest.raises(errors.InvalidRequest):
        await engine.purge(timedelta(seconds=-1))
    with pytest.raises(errors.InvalidRequest):
        await engine.purge(timedelta(days=1), batch_size=0)
