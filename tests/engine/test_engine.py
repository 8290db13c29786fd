"""The engine on the in-memory store: the flow, each failure path, recovery, events."""

from __future__ import annotations

from datetime import timedelta

import pytest

from chatsvg_core import errors
from chatsvg_core.engine import Engine, EngineEvent, EventKind
from chatsvg_core.jobs import JobStatus
from chatsvg_core.ledger import Ledger
from chatsvg_core.queues import InProcessQueue
from chatsvg_core.retry import Jitter, RetryPolicy
from chatsvg_core.storage import EntryKind
from chatsvg_core.storage.memory import MemoryStore
from chatsvg_core.testing import FakeClock

from ._support import Crash, ScriptedProvider, check_invariants

POLICY = RetryPolicy(max_attempts=3, initial_delay=1.0, max_delay=10.0, jitter=Jitter.NONE)
NO_CALL_RETRY = POLICY.model_copy(update={"max_attempts": 1})


def make(
    script: list[str] | None = None, **kw: object
) -> tuple[Engine, MemoryStore, ScriptedProvider, FakeClock, list[EngineEvent]]:
    store = MemoryStore()
    clock = FakeClock()
    provider = ScriptedProvider(script or [])
    events: list[EngineEvent] = []
    kw.setdefault("on_event", events.append)
    engine = Engine(
        store,
        None,
        provider,
        policy=POLICY,
        call_policy=NO_CALL_RETRY,
        clock=clock,
        heartbeat_every=3600,
        **kw,  # type: ignore[arg-type]
    )
    return engine, store, provider, clock, events


async def funded(engine: Engine, owner: str = "alice", credits: int = 10) -> None:
    await Ledger(engine.store, clock=engine.clock).grant(owner, credits)


async def test_happy_path_charges_once_and_stores_the_sanitized_svg() -> None:
    engine, store, provider, clock, events = make(["prose"])
    await funded(engine)
    sub = await engine.submit("alice", "key-1", {"prompt": "a red circle"})
    assert sub.job.status is JobStatus.QUEUED
    assert not sub.replayed
    done = await engine.process(sub.job.id, "w1")
    assert done is not None
    assert done.status is JobStatus.SUCCEEDED
    result = await engine.result(sub.job.id)
    assert result is not None
    assert result.svg.startswith("<svg")
    assert "circle" in result.svg
    async with store.transaction() as tx:
        assert await tx.balance("alice") == 10 - engine.pricing.cost(
            engine.prepare({"prompt": "x"})
        )
    kinds = [e.kind for e in events]
    assert kinds == [
        EventKind.SUBMITTED,
        EventKind.CLAIMED,
        EventKind.CHARGED,
        EventKind.GENERATED,
        EventKind.SUCCEEDED,
    ]
    await check_invariants(store, ["alice"], recovered=True)


async def test_replay_returns_the_same_job_and_conflict_is_refused() -> None:
    engine, *_ = make()
    first = await engine.submit("alice", "k", {"prompt": "a cat"})
    again = await engine.submit("alice", "k", {"prompt": "a cat"})
    assert again.replayed
    assert again.job.id == first.job.id
    with pytest.raises(errors.IdempotencyConflict):
        await engine.submit("alice", "k", {"prompt": "a dog"})
    other_owner = await engine.submit("bob", "k", {"prompt": "a dog"})
    assert other_owner.job.id != first.job.id


async def test_bad_prompt_is_refused_before_anything_is_written() -> None:
    engine, store, *_ = make()
    with pytest.raises(errors.PromptRejected):
        await engine.submit("alice", "k", {"prompt": "   "})
    async with store.transaction() as tx:
        assert list(await tx.list_jobs()) == []


async def test_insufficient_credits_fails_without_charge() -> None:
    engine, store, provider, *_ = make()
    sub = await engine.submit("alice", None, {"prompt": "a cat"})
    await Ledger(store, clock=engine.clock).grant("alice", 1)
    job = await engine.process(sub.job.id, "w")
    assert job is not None
    assert job.status is JobStatus.FAILED
    assert job.last_error is not None
    assert job.last_error.code == "insufficient_credits"
    assert provider.calls == 0
    await check_invariants(store, ["alice"], recovered=True)


async def test_transient_failure_requeues_with_policy_delay_then_succeeds() -> None:
    engine, store, provider, clock, events = make(["transient", "ok"])
    await funded(engine)
    sub = await engine.submit("alice", None, {"prompt": "a cat"})
    job = await engine.process(sub.job.id, "w")
    assert job is not None
    assert job.status is JobStatus.QUEUED
    assert job.run_at == clock.now() + timedelta(seconds=POLICY.delay(1))
    assert await engine.process(sub.job.id, "w") is None  # not due yet
    clock.advance(POLICY.delay(1))
    job = await engine.process(sub.job.id, "w")
    assert job is not None
    assert job.status is JobStatus.SUCCEEDED
    async with store.transaction() as tx:
        charges = [e for e in await tx.entries("alice") if e.kind is EntryKind.CHARGE]
    assert len(charges) == 1, "a retried job is charged once"
    await check_invariants(store, ["alice"], recovered=True)


async def test_permanent_failure_fails_and_refunds_once() -> None:
    engine, store, _, _, events = make(["permanent"])
    await funded(engine)
    sub = await engine.submit("alice", None, {"prompt": "a cat"})
    job = await engine.process(sub.job.id, "w")
    assert job is not None
    assert job.status is JobStatus.FAILED
    async with store.transaction() as tx:
        assert await tx.balance("alice") == 10
    assert EventKind.REFUNDED in [e.kind for e in events]
    await check_invariants(store, ["alice"], recovered=True)


async def test_no_svg_is_permanent_and_attempts_spent_is_final() -> None:
    engine, store, _, clock, _ = make(["transient", "transient", "transient"])
    await funded(engine)
    sub = await engine.submit("alice", None, {"prompt": "a cat"})
    for _ in range(3):
        job = await engine.process(sub.job.id, "w")
        clock.advance(60)
    assert job is not None
    assert job.status is JobStatus.FAILED
    assert job.attempt == 3
    await check_invariants(store, ["alice"], recovered=True)
    engine2, store2, *_ = make(["nosvg"])
    await funded(engine2)
    sub2 = await engine2.submit("alice", None, {"prompt": "a cat"})
    job2 = await engine2.process(sub2.job.id, "w")
    assert job2 is not None
    assert job2.status is JobStatus.FAILED
    assert job2.last_error is not None
    assert job2.last_error.code == "no_svg_found"


async def test_crashed_worker_is_recovered_and_its_late_write_refused() -> None:
    engine, store, provider, clock, events = make(["crash", "ok"])
    await funded(engine)
    sub = await engine.submit("alice", None, {"prompt": "a cat"})
    with pytest.raises(Crash):
        await engine.process(sub.job.id, "dead-worker")
    stuck = await engine.get(sub.job.id)
    assert stuck.status is JobStatus.RUNNING
    clock.advance(engine.lease)
    report = await engine.recover()
    assert report.requeued == [sub.job.id]
    clock.advance(3600)
    job = await engine.process(sub.job.id, "w2")
    assert job is not None
    assert job.status is JobStatus.SUCCEEDED
    assert job.attempt == 2
    await check_invariants(store, ["alice"], recovered=True)


async def test_recovery_fails_and_refunds_when_attempts_are_spent() -> None:
    engine, store, _, clock, _ = make(["crash"] * 3)
    await funded(engine)
    sub = await engine.submit("alice", None, {"prompt": "a cat"})
    for _ in range(3):
        with pytest.raises(Crash):
            await engine.process(sub.job.id, "w")
        clock.advance(engine.lease)
        await engine.recover()
        clock.advance(3600)
    job = await engine.get(sub.job.id)
    assert job.status is JobStatus.FAILED
    async with store.transaction() as tx:
        assert await tx.balance("alice") == 10
    await check_invariants(store, ["alice"], recovered=True)


async def test_daily_cap_fails_the_job_without_charge() -> None:
    engine, store, *_ = make(daily_cap=2)
    await funded(engine)
    first = await engine.submit("alice", None, {"prompt": "a cat"})
    second = await engine.submit("alice", None, {"prompt": "a dog"})
    assert (await engine.process(first.job.id, "w")).status is JobStatus.SUCCEEDED  # type: ignore[union-attr]
    job = await engine.process(second.job.id, "w")
    assert job is not None
    assert job.last_error is not None
    assert job.last_error.code == "daily_cap_exceeded"
    await check_invariants(store, ["alice"], recovered=True)


async def test_duplicate_delivery_runs_once() -> None:
    engine, store, provider, *_ = make()
    await funded(engine)
    sub = await engine.submit("alice", None, {"prompt": "a cat"})
    assert (await engine.process(sub.job.id, "w1")) is not None
    assert await engine.process(sub.job.id, "w2") is None
    assert provider.calls == 1
    assert await engine.process("no-such-job", "w") is None


async def test_in_process_queue_drives_jobs_to_the_end() -> None:
    store = MemoryStore()
    clock = FakeClock()
    queue = InProcessQueue(concurrency=3)
    engine = Engine(store, queue, ScriptedProvider(), clock=clock, heartbeat_every=3600)
    await Ledger(store, clock=clock).grant("alice", 100)
    ids = [(await engine.submit("alice", f"k{i}", {"prompt": f"cat {i}"})).job.id for i in range(8)]

    async def handle(job_id: str) -> None:
        await engine.process(job_id, "w")

    await queue.serve(handle, until_idle=True)
    for job_id in ids:
        assert (await engine.get(job_id)).status is JobStatus.SUCCEEDED
    await check_invariants(store, ["alice"], recovered=True)


async def test_event_hook_errors_do_not_break_jobs() -> None:
    def bad_hook(event: EngineEvent) -> None:
        raise RuntimeError("metrics down")

    engine, store, *_ = make(on_event=bad_hook)
    await funded(engine)
    sub = await engine.submit("alice", None, {"prompt": "a cat"})
    job = await engine.process(sub.job.id, "w")
    assert job is not None
    assert job.status is JobStatus.SUCCEEDED


async def test_owner_without_account_fails_without_charge() -> None:
    engine, store, provider, *_ = make()
    sub = await engine.submit("nobody", None, {"prompt": "a cat"})
    job = await engine.process(sub.job.id, "w")
    assert job is not None
    assert job.status is JobStatus.FAILED
    assert job.last_error is not None
    assert job.last_error.code == "insufficient_credits"  # no account: a balance of 0
    assert provider.calls == 0


async def test_process_next_takes_due_jobs_from_the_store() -> None:
    engine, store, provider, clock, _ = make(["transient"])
    await funded(engine)
    a = await engine.submit("alice", None, {"prompt": "a cat"})
    b = await engine.submit("alice", None, {"prompt": "a dog"})
    first = await engine.process_next("w")
    second = await engine.process_next("w")
    assert first is not None
    assert second is not None
    assert {first.id, second.id} == {a.job.id, b.job.id}
    assert first.status is JobStatus.QUEUED  # the scripted transient failure
    assert second.status is JobStatus.SUCCEEDED
    assert await engine.process_next("w") is None  # the retry is not due yet
    clock.advance(60)
    third = await engine.process_next("w")
    assert third is not None
    assert third.status is JobStatus.SUCCEEDED
    await check_invariants(store, ["alice"], recovered=True)


async def test_shutdown_hands_running_jobs_back_at_once() -> None:
    import asyncio

    started = asyncio.Event()

    class SlowProvider(ScriptedProvider):
        async def generate(self, request):  # type: ignore[no-untyped-def]
            started.set()
            await asyncio.sleep(30)
            return await super().generate(request)

    store = MemoryStore()
    clock = FakeClock()
    queue = InProcessQueue(concurrency=2)
    engine = Engine(store, queue, SlowProvider(), clock=clock, heartbeat_every=3600)
    await Ledger(store, clock=clock).grant("alice", 10)
    sub = await engine.submit("alice", None, {"prompt": "a cat"})

    async def handle(job_id: str) -> None:
        await engine.process(job_id, "w")

    server = asyncio.create_task(queue.serve(handle))
    await started.wait()
    assert (await engine.get(sub.job.id)).status is JobStatus.RUNNING
    await queue.stop(grace=0.05)
    await server
    job = await engine.get(sub.job.id)
    assert job.status is JobStatus.QUEUED, "released, not left RUNNING until its lease lapses"
    assert job.last_error is not None
    assert job.last_error.transient
    await check_invariants(store, ["alice"], recovered=True)
