"""Cancelling a job: terminal at once, credits back exactly once, a running worker fenced off."""

from __future__ import annotations

import pytest

from chatsvg_core import errors
from chatsvg_core.engine import Engine, EngineEvent, EventKind
from chatsvg_core.jobs import JobStatus
from chatsvg_core.ledger import Ledger
from chatsvg_core.retry import Jitter, RetryPolicy
from chatsvg_core.storage.memory import MemoryStore
from chatsvg_core.testing import FakeClock

from ._support import ScriptedProvider, check_invariants

POLICY = RetryPolicy(max_attempts=3, initial_delay=1.0, max_delay=10.0, jitter=Jitter.NONE)
MODES = ["claim", "submit"]


def make(
    charge_at: str, script: list[str] | None = None, **kw: object
) -> tuple[Engine, Ledger, ScriptedProvider, list[EngineEvent]]:
    store = MemoryStore()
    clock = FakeClock()
    provider = ScriptedProvider(script or [])
    events: list[EngineEvent] = []
    engine = Engine(
        store,
        None,
        provider,
        policy=POLICY,
        call_policy=POLICY.model_copy(update={"max_attempts": 1}),
        clock=clock,
        heartbeat_every=3600,
        on_event=events.append,
        charge_at=charge_at,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )
    return engine, Ledger(store, clock=clock), provider, events


async def entries(engine: Engine) -> list[str]:
    async with engine.store.transaction() as tx:
        return sorted(e.kind.value for e in await tx.entries("alice", limit=100))


@pytest.mark.parametrize("mode", MODES)
async def test_a_queued_job_ends_at_once_with_its_credits_back(mode: str) -> None:
    engine, ledger, provider, events = make(mode)
    await ledger.grant("alice", 10)
    sub = await engine.submit("alice", "k", {"prompt": "a red circle"})
    done = await engine.cancel(sub.job.id, "alice", reason="changed my mind")
    assert done.status is JobStatus.FAILED and done.terminal
    assert done.last_error is not None
    assert done.last_error.code == "cancelled"
    assert "changed my mind" in done.last_error.message
    assert await ledger.balance("alice") == 10
    assert await engine.process(sub.job.id, "w") is None, "a cancelled job never runs"
    assert provider.calls == 0
    again = await engine.cancel(sub.job.id, "alice")
    assert again == done, "cancelling twice changes nothing"
    expected = ["grant", "release", "reserve"] if mode == "submit" else ["grant"]
    assert await entries(engine) == expected
    assert [e.kind for e in events].count(EventKind.REFUNDED) == (mode == "submit")
    await check_invariants(engine.store, ["alice"], recovered=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("step", ["claimed", "generated"])
async def test_a_running_job_is_refunded_once_and_its_worker_refused(mode: str, step: str) -> None:
    cancelled: list[str] = []
    engine, ledger, provider, events = make(mode)

    async def owner_cancels(at: str, job_id: str) -> None:
        if at == step:
            cancelled.append((await engine.cancel(job_id, "alice")).status.value)

    engine.checkpoint = owner_cancels
    await ledger.grant("alice", 10)
    sub = await engine.submit("alice", None, {"prompt": "a red circle"})
    assert await engine.process(sub.job.id, "w") is None, "the worker's result was refused"
    assert cancelled == ["failed"]
    job = await engine.get(sub.job.id)
    assert job.status is JobStatus.FAILED and job.last_error is not None
    assert job.last_error.code == "cancelled"
    assert job.last_error.fields["while"] == "running"
    assert await engine.result(sub.job.id) is None
    assert await ledger.balance("alice") == 10
    given_back = "release" if mode == "submit" else "refund"
    assert (await entries(engine)).count(given_back) == 1
    assert "capture" not in await entries(engine)
    assert EventKind.LEASE_LOST in [e.kind for e in events]
    await engine.recover()
    assert (await entries(engine)).count(given_back) == 1, "recovery gives nothing twice"
    await check_invariants(engine.store, ["alice"], recovered=True)


async def test_only_the_owner_may_cancel_and_finished_jobs_stay_finished() -> None:
    engine, ledger, _, _ = make("claim")
    await ledger.grant("alice", 10)
    sub = await engine.submit("alice", None, {"prompt": "a red circle"})
    with pytest.raises(errors.JobNotFound):
        await engine.cancel(sub.job.id, "mallory")
    with pytest.raises(errors.JobNotFound):
        await engine.cancel("no-such-job", "alice")
    with pytest.raises(errors.JobNotFound):
        await engine.cancel(42, "alice")  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidOwner):
        await engine.cancel(sub.job.id, "")
    await engine.process(sub.job.id, "w")
    with pytest.raises(errors.InvalidTransition) as err:
        await engine.cancel(sub.job.id, "alice")
    assert (err.value.reason, err.value.http_status) == ("terminal", 409)
    assert await ledger.balance("alice") == 8, "a finished job keeps its charge"


async def test_run_once_says_what_happened() -> None:
    engine, ledger, provider, _ = make("claim", ["transient", "ok"])
    await ledger.grant("alice", 10)
    assert (await engine.run_once("nope", "w")).kind == "unknown"
    assert (await engine.run_once(None, "w")).kind == "idle"
    sub = await engine.submit("alice", None, {"prompt": "a red circle"})
    first = await engine.run_once(sub.job.id, "w")
    assert first.kind == "retry_scheduled" and first.job is not None
    assert (await engine.run_once(sub.job.id, "w")).kind == "not_due"
    engine.clock.advance(60)  # type: ignore[attr-defined]
    done = await engine.run_once(None, "w")
    assert done.kind == "succeeded" and done.job is not None and done.job.id == sub.job.id
    assert (await engine.run_once(sub.job.id, "w")).kind == "taken"

    async def owner_cancels(at: str, job_id: str) -> None:
        if at == "claimed":
            await engine.cancel(job_id, "alice")

    engine.checkpoint = owner_cancels
    other = await engine.submit("alice", None, {"prompt": "a blue square"})
    lost = await engine.run_once(other.job.id, "w")
    assert (lost.kind, lost.job) == ("lease_lost", None)
    assert await engine.process(other.job.id, "w") is None  # process() is unchanged
    broke = await engine.submit("nobody", None, {"prompt": "a cat"})
    assert (await engine.run_once(broke.job.id, "w")).kind == "failed"
