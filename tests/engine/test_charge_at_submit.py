"""Credits reserved at submit: refused at the door, captured on success, released once."""

from __future__ import annotations

import pytest

from chatsvg_core import errors
from chatsvg_core.engine import Engine, EngineEvent, EventKind
from chatsvg_core.jobs import JobStatus
from chatsvg_core.ledger import Ledger
from chatsvg_core.retry import Jitter, RetryPolicy
from chatsvg_core.storage import Store
from chatsvg_core.storage.memory import MemoryStore
from chatsvg_core.testing import FakeClock

from ._support import ScriptedProvider, check_invariants

POLICY = RetryPolicy(max_attempts=3, initial_delay=1.0, max_delay=10.0, jitter=Jitter.NONE)


def make(
    script: list[str] | None = None, store: Store | None = None, **kw: object
) -> tuple[Engine, Ledger, ScriptedProvider, FakeClock, list[EngineEvent]]:
    store = store or MemoryStore()
    clock = FakeClock()
    provider = ScriptedProvider(script or [])
    events: list[EngineEvent] = []
    kw.setdefault("charge_at", "submit")
    engine = Engine(
        store,
        None,
        provider,
        policy=POLICY,
        call_policy=POLICY.model_copy(update={"max_attempts": 1}),
        clock=clock,
        heartbeat_every=3600,
        on_event=events.append,
        **kw,  # type: ignore[arg-type]
    )
    return engine, Ledger(store, clock=clock), provider, clock, events


async def kinds(engine: Engine, owner: str = "alice") -> list[str]:
    async with engine.store.transaction() as tx:
        entries = await tx.entries(owner, limit=100)
    # Sorted: entries written at one fake instant have no order among them.
    return sorted(e.kind.value for e in entries)


async def test_submit_reserves_and_success_captures() -> None:
    engine, ledger, _, _, events = make()
    await ledger.grant("alice", 10)
    sub = await engine.submit("alice", "k", {"prompt": "a red circle"})
    assert await ledger.balance("alice") == 8, "held at submit"
    assert [e.kind for e in events] == [EventKind.SUBMITTED, EventKind.CHARGED]
    assert events[-1].fields == {"amount": 2, "mode": "reserve"}
    done = await engine.process(sub.job.id, "w")
    assert done is not None and done.status is JobStatus.SUCCEEDED
    assert await kinds(engine) == ["capture", "grant", "reserve"]
    assert await ledger.balance("alice") == 8
    await check_invariants(engine.store, ["alice"], recovered=True)


async def test_a_refused_submit_creates_nothing_and_leaves_the_key_free() -> None:
    engine, ledger, _, _, _ = make()
    await ledger.grant("alice", 1)
    with pytest.raises(errors.InsufficientCredits) as err:
        await engine.submit("alice", "k", {"prompt": "a red circle"})
    assert err.value.http_status == 402
    assert (err.value.balance, err.value.amount) == (1, 2)
    async with engine.store.transaction() as tx:
        assert not await tx.list_jobs(limit=10)
    await ledger.grant("alice", 5)
    sub = await engine.submit("alice", "k", {"prompt": "a red circle"})
    assert not sub.replayed, "the same key works once the owner has credits"
    again = await engine.submit("alice", "k", {"prompt": "a red circle"})
    assert again.replayed and again.job.id == sub.job.id
    assert await kinds(engine) == ["grant", "grant", "reserve"], "a replay reserves nothing"


async def test_an_owner_without_an_account_is_refused_with_402() -> None:
    engine, *_ = make()
    with pytest.raises(errors.InsufficientCredits) as err:
        await engine.submit("nobody", None, {"prompt": "a red circle"})
    assert err.value.balance == 0


async def test_the_daily_cap_counts_reservations() -> None:
    engine, ledger, _, _, _ = make(daily_cap=4)
    await ledger.grant("alice", 100)
    await engine.submit("alice", None, {"prompt": "one"})
    await engine.submit("alice", None, {"prompt": "two"})
    with pytest.raises(errors.DailyCapExceeded) as err:
        await engine.submit("alice", None, {"prompt": "three"})
    assert (err.value.used, err.value.cap) == (4, 4)


async def test_a_final_failure_releases_exactly_once_and_gives_the_cap_back() -> None:
    engine, ledger, _, _, events = make(["permanent"], daily_cap=2)
    await ledger.grant("alice", 10)
    sub = await engine.submit("alice", None, {"prompt": "a red circle"})
    done = await engine.process(sub.job.id, "w")
    assert done is not None and done.status is JobStatus.FAILED
    assert await kinds(engine) == ["grant", "release", "reserve"]
    assert await ledger.balance("alice") == 10
    assert [e.fields.get("amount") for e in events if e.kind is EventKind.REFUNDED] == [2]
    await engine.recover()
    assert await kinds(engine) == ["grant", "release", "reserve"], "recovery gives nothing twice"
    await engine.submit("alice", None, {"prompt": "again"})  # the released credits count again
    await check_invariants(engine.store, ["alice"], recovered=True)


async def test_retries_spend_nothing_more() -> None:
    engine, ledger, _, clock, _ = make(["transient", "transient", "ok"])
    await ledger.grant("alice", 10)
    sub = await engine.submit("alice", None, {"prompt": "a red circle"})
    for _ in range(3):
        await engine.process(sub.job.id, "w")
        clock.advance(60)
    assert (await engine.get(sub.job.id)).status is JobStatus.SUCCEEDED
    assert await kinds(engine) == ["capture", "grant", "reserve"]


async def test_an_expired_last_attempt_releases_in_recovery() -> None:
    engine, ledger, _, clock, _ = make()
    await ledger.grant("alice", 10)
    sub = await engine.submit("alice", None, {"prompt": "a red circle"})
    async with engine.store.transaction() as tx:
        job = await tx.get_job(sub.job.id)
        assert job is not None
        assert await tx.update_job(job.evolve(max_attempts=1), expected_version=job.version)
    from chatsvg_core.storage import claim_job

    async with engine.store.transaction() as tx:
        await claim_job(tx, sub.job.id, now=clock.now(), worker_id="w", lease=engine.lease)
    clock.advance(engine.lease.total_seconds() + 1)
    report = await engine.recover()
    assert report.refunded == [sub.job.id]
    assert await kinds(engine) == ["grant", "release", "reserve"]


async def test_a_claim_mode_worker_does_not_charge_a_reserved_job() -> None:
    api, ledger, provider, _, _ = make()
    await ledger.grant("alice", 10)
    sub = await api.submit("alice", None, {"prompt": "a red circle"})
    worker = Engine(api.store, None, provider, clock=api.clock, charge_at="claim")
    done = await worker.process(sub.job.id, "w")
    assert done is not None and done.status is JobStatus.SUCCEEDED
    assert await kinds(api) == ["capture", "grant", "reserve"]


async def test_the_in_flight_limit_counts_queued_and_running_jobs() -> None:
    engine, ledger, _, _, _ = make(max_in_flight=2)
    await ledger.grant("alice", 100)
    first = await engine.submit("alice", None, {"prompt": "one"})
    await engine.submit("alice", None, {"prompt": "two"})
    with pytest.raises(errors.InFlightLimitExceeded) as err:
        await engine.submit("alice", "k", {"prompt": "three"})
    assert (err.value.limit, err.value.in_flight, err.value.http_status) == (2, 2, 429)
    assert err.value.transient
    await engine.process(first.job.id, "w")
    await engine.submit("alice", "k", {"prompt": "three"})  # room again, same key


async def test_the_in_flight_limit_works_in_claim_mode_too() -> None:
    engine, *_ = make(max_in_flight=1, charge_at="claim")
    await engine.submit("alice", None, {"prompt": "one"})
    with pytest.raises(errors.InFlightLimitExceeded):
        await engine.submit("alice", None, {"prompt": "two"})
    await engine.submit("bob", None, {"prompt": "one"})


async def test_charge_at_is_checked() -> None:
    with pytest.raises(errors.ConfigurationError):
        make(charge_at="later")


async def test_submit_mode_on_sqlite(tmp_path: object) -> None:
    from pathlib import Path

    from chatsvg_core.storage.sqlite import SQLiteStore

    store = await SQLiteStore.open(Path(str(tmp_path)) / "db.sqlite")
    try:
        engine, ledger, _, _, _ = make(["permanent"], store=store)
        await ledger.grant("alice", 3)
        sub = await engine.submit("alice", "k", {"prompt": "a red circle"})
        with pytest.raises(errors.InsufficientCredits):
            await engine.submit("alice", "k2", {"prompt": "another"})
        await engine.process(sub.job.id, "w")
        assert await kinds(engine) == ["grant", "release", "reserve"]
    finally:
        await store.aclose()
