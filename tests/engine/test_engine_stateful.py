"""The whole engine as a hypothesis state machine, with crashes between any two steps.

Random submits (repeated and conflicting keys), grants, worker runs whose
provider succeeds, fails briefly, fails for good, or crashes the worker, crashes
at every named checkpoint, clock moves past leases, and recovery passes. After
every step the invariants of ARCHITECTURE.md hold over the whole store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule

from chatsvg_core import errors
from chatsvg_core.engine import Engine
from chatsvg_core.jobs import JobStatus
from chatsvg_core.ledger import Ledger
from chatsvg_core.retry import Jitter, RetryPolicy
from chatsvg_core.storage.memory import MemoryStore
from chatsvg_core.testing import FakeClock

from ._support import Crash, ScriptedProvider, check_invariants

T = TypeVar("T")
OWNERS = ["ann", "bob"]
POLICY = RetryPolicy(max_attempts=2, initial_delay=1.0, max_delay=30.0, jitter=Jitter.FULL)


class EngineMachine(RuleBasedStateMachine):
    jobs = Bundle("jobs")
    CHARGE_AT: Literal["claim", "submit"] = "claim"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store = MemoryStore()
        self.clock = FakeClock()
        self.provider = ScriptedProvider()
        self.crash_at: str | None = None
        self.cancel_at: str | None = None
        self.engine = Engine(
            self.store,
            None,
            self.provider,
            policy=POLICY,
            call_policy=POLICY.model_copy(update={"max_attempts": 1}),
            clock=self.clock,
            heartbeat_every=10**6,
            daily_cap=lambda owner: 12 if owner == "bob" else None,
            checkpoint=self._checkpoint,
            charge_at=self.CHARGE_AT,
        )
        self.ledger = Ledger(self.store, clock=self.clock)
        self.keys: dict[tuple[str, str], tuple[str, str, datetime]] = {}

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.loop.close()

    async def _checkpoint(self, step: str, job_id: str) -> None:
        if self.cancel_at == step:
            self.cancel_at = None
            job = await self.engine.get(job_id)
            await self.engine.cancel(job_id, job.owner)
        if self.crash_at == step:
            self.crash_at = None
            raise Crash

    @rule(owner=st.sampled_from(OWNERS), amount=st.integers(1, 6))
    def grant(self, owner: str, amount: int) -> None:
        self.run(self.ledger.grant(owner, amount))

    @rule(
        target=jobs,
        owner=st.sampled_from(OWNERS),
        key=st.sampled_from([None, "k1", "k2"]),
        prompt=st.sampled_from(["a cat", "a dog", "a red sun"]),
    )
    def submit(self, owner: str, key: str | None, prompt: str) -> Any:
        now = self.clock.now()
        live = None
        if key is not None and (owner, key) in self.keys:
            job_id, first_prompt, at = self.keys[(owner, key)]
            if now < at + self.engine.idempotency_ttl:
                live = (job_id, first_prompt)
        try:
            result = self.run(self.engine.submit(owner, key, {"prompt": prompt}))
        except errors.IdempotencyConflict:
            assert live is not None
            assert live[1] != prompt
            return live[0]
        except (errors.InsufficientCredits, errors.DailyCapExceeded):
            # Refused at submit: only a new job is ever refused (a replay
            # reserves nothing), and the key stays free for a later submit.
            assert self.CHARGE_AT == "submit"
            assert live is None
            return multiple()
        if key is not None:
            if live is not None:
                assert result.replayed
                assert (result.job.id, prompt) == live
            else:
                assert not result.replayed
                self.keys[(owner, key)] = (result.job.id, prompt, now)
        return result.job.id

    @rule(
        job_id=jobs,
        outcome=st.sampled_from(["ok", "prose", "transient", "permanent", "nosvg", "crash"]),
        crash_at=st.sampled_from([None, None, "claimed", "generated", "finished"]),
    )
    def work(self, job_id: str, outcome: str, crash_at: str | None) -> None:
        self.provider.script.clear()
        self.provider.script.append(outcome)
        self.crash_at = crash_at
        try:
            self.run(self.engine.process(job_id, "worker"))
        except Crash:
            pass
        finally:
            self.crash_at = None

    @rule(job_id=jobs, owner=st.sampled_from(OWNERS))
    def cancel(self, job_id: str, owner: str) -> None:
        job = self.run(self.engine.get(job_id))
        try:
            done = self.run(self.engine.cancel(job_id, owner))
        except errors.JobNotFound:
            assert job.owner != owner, "the owner's own job was not found"
            return
        except errors.InvalidTransition:
            assert job.terminal and (job.last_error is None or job.last_error.code != "cancelled")
            return
        assert job.owner == owner
        assert done.status is JobStatus.FAILED
        assert done.last_error is not None and done.last_error.code == "cancelled"

    @rule(
        job_id=jobs,
        at=st.sampled_from(["claimed", "generated"]),
        outcome=st.sampled_from(["ok", "transient", "permanent"]),
    )
    def cancel_while_running(self, job_id: str, at: str, outcome: str) -> None:
        # The owner cancels between the worker's claim and its result: the
        # worker must be refused whatever it then tries to write.
        self.provider.script.clear()
        self.provider.script.append(outcome)
        self.cancel_at = at
        try:
            self.run(self.engine.process(job_id, "worker"))
        finally:
            self.cancel_at = None
        job = self.run(self.engine.get(job_id))
        if job.last_error is not None and job.last_error.code == "cancelled":
            assert job.status is JobStatus.FAILED
            assert self.run(self.engine.result(job_id)) is None, "a cancelled job kept a result"

    @rule(job_id=jobs)
    def crash_then_recover(self, job_id: str) -> None:
        # A worker dies holding the lease; time passes; recovery runs. Spelled
        # out as one rule so sequences reach exhausted attempts quickly.
        self.work(job_id, "crash", None)
        self.clock.advance(self.engine.lease + timedelta(seconds=POLICY.max_delay))
        self.recover()
        self.clock.advance(POLICY.max_delay)

    @rule(seconds=st.sampled_from([1, 30, 121, 3600, 86400]))
    def tick(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def recover(self) -> None:
        self.run(self.engine.recover())

    @invariant()
    def money_and_jobs_are_consistent(self) -> None:
        self.run(check_invariants(self.store, OWNERS, recovered=True))

    @invariant()
    def daily_cap_never_exceeded(self) -> None:
        async def used() -> int:
            try:
                return (await self.ledger.usage("bob")).used
            except errors.UnknownAccount:
                return 0

        assert self.run(used()) <= 12

    @invariant()
    def running_jobs_hold_a_lease(self) -> None:
        async def running() -> None:
            async with self.store.transaction() as tx:
                for job in await tx.list_jobs(status=JobStatus.RUNNING, limit=1000):
                    assert job.lease_expires_at is not None

        self.run(running())


EngineMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestEngineMachine = EngineMachine.TestCase


class SubmitModeMachine(EngineMachine):
    """The same machine with credits reserved at submit (``charge_at="submit"``)."""

    CHARGE_AT = "submit"


SubmitModeMachine.TestCase.settings = settings(
    max_examples=75, stateful_step_count=40, deadline=None
)
TestSubmitModeMachine = SubmitModeMachine.TestCase
