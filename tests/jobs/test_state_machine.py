"""The job state machine: examples for each edge, properties, and a stateful model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, note
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from chatsvg_core import errors
from chatsvg_core.jobs import (
    ALLOWED,
    CANCELLED,
    TRANSITIONS,
    Job,
    JobErrorInfo,
    JobStatus,
    cancel,
    claim,
    expire,
    fail,
    heartbeat,
    new_job,
    retry,
    succeed,
)
from chatsvg_core.testing.strategies import (
    JobStep,
    apply_job_step,
    jobs,
    reachable_jobs,
    transition_sequences,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
ERR = JobErrorInfo(code="x", type="X", message="boom", transient=True)
EDGES = {(t.action, t.source, t.target) for t in TRANSITIONS}


def fresh(max_attempts: int = 3) -> Job:
    return new_job(
        job_id="job-1",
        owner="alice",
        request={"prompt": "a red circle"},
        request_hash="v1:00",
        now=T0,
        max_attempts=max_attempts,
    )


# --- one example per edge ------------------------------------------------------


def test_claim_issues_lease_and_token() -> None:
    job = claim(fresh(), now=T0, worker_id="w1", lease=LEASE)
    assert job.status is JobStatus.RUNNING
    assert (job.attempt, job.lease_token, job.worker_id) == (1, 1, "w1")
    assert job.lease_expires_at == T0 + LEASE
    assert job.version == 1


def test_claim_refuses_job_not_yet_due() -> None:
    job = fresh().evolve(run_at=T0 + timedelta(seconds=5))
    with pytest.raises(errors.InvalidTransition) as info:
        claim(job, now=T0, worker_id="w", lease=LEASE)
    assert info.value.fields["reason"] == "not_due"
    assert claim(job, now=T0 + timedelta(seconds=5), worker_id="w", lease=LEASE).attempt == 1


def test_heartbeat_extends_lease_only_with_current_token() -> None:
    job = claim(fresh(), now=T0, worker_id="w", lease=LEASE)
    later = T0 + timedelta(seconds=20)
    beat = heartbeat(job, now=later, token=1, lease=LEASE)
    assert beat.lease_expires_at == later + LEASE
    with pytest.raises(errors.StaleLease):
        heartbeat(job, now=later, token=2, lease=LEASE)


def test_succeed_with_current_token() -> None:
    job = claim(fresh(), now=T0, worker_id="w", lease=LEASE)
    done = succeed(job, now=T0, token=1, result_ref="r1")
    assert done.status is JobStatus.SUCCEEDED and done.result_ref == "r1"
    assert done.lease_token is None and done.terminal


def test_retry_requeues_with_later_run_at_and_error() -> None:
    job = claim(fresh(), now=T0, worker_id="w", lease=LEASE)
    again = retry(job, now=T0, token=1, run_at=T0 + timedelta(seconds=4), error=ERR)
    assert again.status is JobStatus.QUEUED
    assert again.run_at == T0 + timedelta(seconds=4)
    assert again.last_error == ERR and again.worker_id is None


def test_retry_refused_when_attempts_spent() -> None:
    job = claim(fresh(max_attempts=1), now=T0, worker_id="w", lease=LEASE)
    with pytest.raises(errors.InvalidTransition) as info:
        retry(job, now=T0, token=1, run_at=T0, error=ERR)
    assert info.value.fields["reason"] == "attempts_exhausted"


def test_fail_running_needs_token_and_queued_needs_none() -> None:
    job = claim(fresh(), now=T0, worker_id="w", lease=LEASE)
    with pytest.raises(errors.StaleLease):
        fail(job, now=T0, token=7, error=ERR)
    with pytest.raises(errors.InvalidTransition):
        fail(job, now=T0, error=ERR)  # no token: only for QUEUED jobs
    assert fail(job, now=T0, token=1, error=ERR).status is JobStatus.FAILED
    assert fail(fresh(), now=T0, error=ERR).status is JobStatus.FAILED


def test_cancel_fences_off_the_running_worker() -> None:
    running = claim(fresh(), now=T0, worker_id="w", lease=LEASE)
    gone = cancel(running, now=T0, reason="user asked")
    assert gone.status is JobStatus.FAILED and gone.last_error is not None
    assert (gone.last_error.code, gone.last_error.fields["while"]) == (CANCELLED, "running")
    for write in (
        lambda: succeed(gone, now=T0, token=1, result_ref="r"),
        lambda: heartbeat(gone, now=T0, token=1, lease=LEASE),
        lambda: fail(gone, now=T0, token=1, error=ERR),
        lambda: cancel(gone, now=T0),
    ):
        with pytest.raises(errors.InvalidTransition):
            write()
    queued = cancel(fresh(), now=T0)
    assert queued.last_error is not None and queued.last_error.fields["while"] == "queued"


def test_expire_requeues_then_fails_when_attempts_spent() -> None:
    job = claim(fresh(max_attempts=2), now=T0, worker_id="w", lease=LEASE)
    with pytest.raises(errors.InvalidTransition) as info:
        expire(job, now=T0 + LEASE - timedelta(microseconds=1))
    assert info.value.fields["reason"] == "lease_live"
    back = expire(job, now=T0 + LEASE)
    assert back.status is JobStatus.QUEUED
    assert back.last_error is not None and back.last_error.code == "lease_expired"
    again = claim(back, now=T0 + LEASE, worker_id="w2", lease=LEASE)
    assert again.lease_token == 2
    gone = expire(again, now=T0 + 2 * LEASE)
    assert gone.status is JobStatus.FAILED and gone.last_error is not None


def test_stale_worker_cannot_write_after_lease_reissued() -> None:
    first = claim(fresh(), now=T0, worker_id="slow", lease=LEASE)
    second = claim(expire(first, now=T0 + LEASE), now=T0 + LEASE, worker_id="fast", lease=LEASE)
    for write in (
        lambda: succeed(second, now=T0, token=1, result_ref="late"),
        lambda: retry(second, now=T0, token=1, run_at=T0, error=ERR),
        lambda: fail(second, now=T0, token=1, error=ERR),
        lambda: heartbeat(second, now=T0, token=1, lease=LEASE),
    ):
        with pytest.raises(errors.StaleLease) as info:
            write()
        assert info.value.fields["current_token"] == 2


@pytest.mark.parametrize("terminal", ["succeed", "fail"])
def test_terminal_states_refuse_everything(terminal: str) -> None:
    job = claim(fresh(), now=T0, worker_id="w", lease=LEASE)
    end = (
        succeed(job, now=T0, token=1, result_ref="r")
        if terminal == "succeed"
        else fail(job, now=T0, token=1, error=ERR)
    )
    later = T0 + timedelta(days=1)
    attempts = [
        lambda: claim(end, now=later, worker_id="w", lease=LEASE),
        lambda: heartbeat(end, now=later, token=1, lease=LEASE),
        lambda: succeed(end, now=later, token=1, result_ref="r"),
        lambda: retry(end, now=later, token=1, run_at=later, error=ERR),
        lambda: fail(end, now=later, token=1, error=ERR),
        lambda: fail(end, now=later, error=ERR),
        lambda: expire(end, now=later),
    ]
    for attempt in attempts:
        with pytest.raises(errors.InvalidTransition) as info:
            attempt()
        assert info.value.fields["reason"] == "terminal"


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        claim(fresh(), now=datetime(2026, 3, 1, 12), worker_id="w", lease=LEASE)


def test_job_validator_refuses_inconsistent_rows() -> None:
    job = fresh()
    with pytest.raises(ValueError, match="lease_token"):
        job.evolve(status=JobStatus.RUNNING)
    with pytest.raises(ValueError, match="result_ref"):
        job.evolve(result_ref="r")


def test_transition_table_is_the_whole_machine() -> None:
    assert set(ALLOWED) == {"claim", "heartbeat", "succeed", "retry", "fail", "expire", "cancel"}
    assert ALLOWED["cancel"] == {
        (JobStatus.QUEUED, JobStatus.FAILED),
        (JobStatus.RUNNING, JobStatus.FAILED),
    }
    sources = {t.source for t in TRANSITIONS}
    assert JobStatus.SUCCEEDED not in sources and JobStatus.FAILED not in sources


# --- properties ---------------------------------------------------------------


@given(jobs(), transition_sequences(max_size=30))
def test_every_change_is_an_edge_of_the_table(job: Job, steps: list[JobStep]) -> None:
    now = job.created_at
    for step in steps:
        now += timedelta(seconds=step.advance)
        before = job
        try:
            job = apply_job_step(job, step, now)
        except errors.InvalidTransition:
            continue
        if step.action == "wait":
            assert job is before
            continue
        assert (step.action, before.status, job.status) in EDGES
        assert job.version == before.version + 1
        assert not before.terminal
        assert job.attempt <= job.max_attempts
        assert job.attempt >= before.attempt


@given(reachable_jobs())
def test_reachable_jobs_are_consistent(job: Job) -> None:
    # Re-validating a reachable job through its JSON form keeps it identical:
    # stores can persist and reload any job the transitions produce.
    assert Job.model_validate_json(job.model_dump_json()) == job
    if job.status is JobStatus.RUNNING:
        assert job.lease_token == job.attempt


# --- stateful: several workers race for one job ---------------------------------


class JobMachine(RuleBasedStateMachine):
    """Workers claim, beat, finish, and lose leases; the model checks who may write."""

    tokens = Bundle("tokens")

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.job = fresh(max_attempts=4)
        self.history: list[JobStatus] = [self.job.status]

    def _apply(self, change: object) -> bool:
        before = self.job
        try:
            self.job = change()  # type: ignore[operator]
        except errors.InvalidTransition as exc:
            note(f"refused: {exc}")
            assert self.job is before
            return False
        assert self.job.version == before.version + 1
        assert not before.terminal, "a terminal job changed"
        self.history.append(self.job.status)
        return True

    @rule(seconds=st.sampled_from([1, 10, 29, 30, 31, 120]))
    def tick(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(target=tokens)
    def claim_it(self) -> int:
        ok = self._apply(lambda: claim(self.job, now=self.now, worker_id="w", lease=LEASE))
        return self.job.lease_token if ok and self.job.lease_token else -1

    @rule(token=tokens)
    def beat(self, token: int) -> None:
        current = self.job.lease_token
        ok = self._apply(lambda: heartbeat(self.job, now=self.now, token=token, lease=LEASE))
        assert ok == (current is not None and token == current)

    @rule(token=consumes(tokens))
    def finish(self, token: int) -> None:
        current = self.job.lease_token
        ok = self._apply(lambda: succeed(self.job, now=self.now, token=token, result_ref="r"))
        assert ok == (current is not None and token == current), "stale token succeeded"

    @rule(token=consumes(tokens), delay=st.sampled_from([0, 5, 60]))
    def back_off(self, token: int, delay: int) -> None:
        current, attempt = self.job.lease_token, self.job.attempt
        run_at = self.now + timedelta(seconds=delay)
        ok = self._apply(
            lambda: retry(self.job, now=self.now, token=token, run_at=run_at, error=ERR)
        )
        left = attempt < self.job.max_attempts
        assert ok == (current is not None and token == current and left)

    @rule(token=consumes(tokens))
    def give_up(self, token: int) -> None:
        current = self.job.lease_token
        ok = self._apply(lambda: fail(self.job, now=self.now, token=token, error=ERR))
        assert ok == (current is not None and token == current)

    @precondition(lambda self: self.job.status is JobStatus.QUEUED)
    @rule()
    def refuse_queued(self) -> None:
        assert self._apply(lambda: fail(self.job, now=self.now, error=ERR))

    @rule()
    def owner_cancels(self) -> None:
        # Any non-terminal job, no token: a running worker is fenced off after it.
        live = not self.job.terminal
        ok = self._apply(lambda: cancel(self.job, now=self.now))
        assert ok == live
        if ok:
            assert self.job.status is JobStatus.FAILED
            assert self.job.last_error is not None
            assert self.job.last_error.code == CANCELLED
            assert self.job.lease_token is None

    @rule()
    def recover(self) -> None:
        lapsed = (
            self.job.status is JobStatus.RUNNING
            and self.job.lease_expires_at is not None
            and self.job.lease_expires_at <= self.now
        )
        ok = self._apply(lambda: expire(self.job, now=self.now))
        assert ok == lapsed

    @invariant()
    def one_consistent_state(self) -> None:
        job = self.job
        assert job.status in JobStatus
        assert job.attempt <= job.max_attempts
        assert (job.status is JobStatus.RUNNING) == (job.lease_token is not None)

    @invariant()
    def terminal_is_final(self) -> None:
        for i, status in enumerate(self.history):
            if status.terminal:
                assert self.history[i:] == [status]


TestJobMachine = JobMachine.TestCase
