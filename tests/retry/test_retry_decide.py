"""``RetryPolicy.decide``: the one decision, its limits, hooks, testing switch, round trip."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from retry_strategies import policies

from chatsvg_core import errors
from chatsvg_core.retry import (
    GiveUp,
    GiveUpReason,
    LoggingHook,
    Retry,
    RetryBudget,
    RetryEvent,
    RetryPolicy,
    get_on_retry_hooks,
    get_testing,
    retry_testing,
    set_on_retry_hooks,
    set_testing,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TRANSIENT = errors.ProviderTransientError("busy", status=503)


class Recorder:
    def __init__(self) -> None:
        self.events: list[RetryEvent] = []

    def on_retry(self, event: RetryEvent) -> None:
        self.events.append(event)


def test_a_permanent_error_gives_up_at_once() -> None:
    policy = RetryPolicy()
    assert policy.decide(ValueError("bug"), 1, 0.0) == GiveUp(GiveUpReason.PERMANENT)
    assert policy.decide(errors.NoSVGFound("x"), 1, 0.0) == GiveUp(GiveUpReason.PERMANENT)


def test_transient_errors_retry_with_the_policy_delay() -> None:
    policy = RetryPolicy(max_attempts=4)
    for attempt in (1, 2, 3):
        decision = policy.decide(TRANSIENT, attempt, 0.0, rng=random.Random(attempt))
        assert decision == Retry(policy.delay(attempt, rng=random.Random(attempt)))
    assert policy.decide(TRANSIENT, 4, 0.0) == GiveUp(GiveUpReason.ATTEMPTS_EXHAUSTED)


def test_retry_after_is_honoured_and_capped() -> None:
    policy = RetryPolicy(retry_after_cap=10, deadline=None)
    slow = errors.ProviderTransientError("busy", status=429, retry_after=4)
    assert policy.decide(slow, 1, 0.0) == Retry(4.0)
    slower = errors.ProviderTransientError("busy", status=429, retry_after=400)
    assert policy.decide(slower, 1, 0.0) == Retry(10.0)
    ignoring = policy.model_copy(update={"honour_retry_after": False, "jitter": "none"})
    assert ignoring.decide(slower, 1, 0.0) == Retry(ignoring.initial_delay)


def test_a_retry_after_date_is_read_with_now() -> None:
    policy = RetryPolicy(retry_after_cap=100)
    busy = errors.ProviderTransientError("busy", retry_after="Sun, 01 Mar 2026 12:00:30 GMT")
    assert policy.decide(busy, 1, 0.0, now=NOW) == Retry(30.0)


def test_the_deadline_gives_up_when_passed_or_when_the_wait_would_pass_it() -> None:
    policy = RetryPolicy(deadline=10, jitter="none", initial_delay=4, max_delay=4)
    assert policy.decide(TRANSIENT, 1, 5.0) == Retry(4.0)
    assert policy.decide(TRANSIENT, 1, 6.5) == GiveUp(GiveUpReason.DEADLINE)
    assert policy.decide(TRANSIENT, 1, 10.0) == GiveUp(GiveUpReason.DEADLINE)
    long_hint = errors.ProviderTransientError("busy", retry_after=30)
    assert policy.decide(long_hint, 1, 0.0) == GiveUp(GiveUpReason.DEADLINE)
    assert policy.model_copy(update={"deadline": None}).decide(TRANSIENT, 1, 1e6) == Retry(4.0)


def test_the_budget_stops_retries_when_too_many_calls_fail() -> None:
    policy = RetryPolicy(max_attempts=100, deadline=None)
    budget = RetryBudget(max_tokens=10, token_ratio=0.1)
    decisions = [policy.decide(TRANSIENT, 1, 0.0, budget=budget) for _ in range(6)]
    assert [d.will_retry for d in decisions] == [True] * 4 + [False] * 2
    assert decisions[-1] == GiveUp(GiveUpReason.BUDGET_EXHAUSTED)
    # permanent errors neither spend nor refund
    before = budget.tokens
    policy.decide(ValueError(), 1, 0.0, budget=budget)
    assert budget.tokens == before
    for _ in range(30):  # from 4 tokens to 7: the next failure leaves 6 > 5
        budget.record_success()
    assert policy.decide(TRANSIENT, 1, 0.0, budget=budget).will_retry


@pytest.mark.parametrize(("attempt", "elapsed"), [(0, 0.0), (1, -1.0), (1, float("nan"))])
def test_bad_arguments_are_refused(attempt: int, elapsed: float) -> None:
    with pytest.raises(ValueError, match=r"attempt|elapsed"):
        RetryPolicy().decide(TRANSIENT, attempt, elapsed)


@settings(max_examples=100)
@given(policies(), st.integers(0, 2**32), st.lists(st.floats(0, 50), min_size=1, max_size=120))
def test_a_job_loop_driven_by_decide_never_exceeds_max_attempts(
    policy: RetryPolicy, seed: int, durations: list[float]
) -> None:
    # The job-level use: after each failed attempt ask decide; re-enqueue on Retry.
    rng = random.Random(seed)
    elapsed, attempt, previous = 0.0, 0, None
    while True:
        attempt += 1
        elapsed += durations[attempt % len(durations)]
        decision = policy.decide(TRANSIENT, attempt, elapsed, rng=rng, previous=previous)
        if isinstance(decision, GiveUp):
            break
        assert decision.delay >= 0
        if policy.deadline is not None:
            assert elapsed + decision.delay <= policy.deadline
        elapsed += decision.delay
        previous = decision.delay
    assert attempt <= policy.max_attempts
    assert decision.reason in {GiveUpReason.ATTEMPTS_EXHAUSTED, GiveUpReason.DEADLINE}
    if decision.reason is GiveUpReason.ATTEMPTS_EXHAUSTED:
        assert attempt == policy.max_attempts


@given(policies(overrides=True))
def test_json_round_trip_is_identity(policy: RetryPolicy) -> None:
    loaded = RetryPolicy.model_validate_json(policy.model_dump_json())
    assert loaded == policy
    assert hash(loaded) == hash(policy)
    assert RetryPolicy.model_validate(policy.model_dump()) == policy
    assert RetryPolicy.model_validate(policy.model_dump(mode="json")) == policy


def test_the_policy_is_frozen_and_strict() -> None:
    policy = RetryPolicy(status_overrides={404: "transient"})
    with pytest.raises(ValidationError):
        policy.max_attempts = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        policy.status_overrides[500] = "transient"  # type: ignore[index]
    with pytest.raises(TypeError):
        RetryPolicy().type_overrides["x.Y"] = "transient"  # type: ignore[index]
    assert len({RetryPolicy(), RetryPolicy(), policy}) == 2
    with pytest.raises(ValidationError, match="initial_delay"):
        RetryPolicy(initial_delay=10, max_delay=1)
    with pytest.raises(ValidationError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValidationError):
        RetryPolicy(maxattempts=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        RetryPolicy(max_delay=float("inf"))
    with pytest.raises(ValidationError, match="HTTP status"):
        RetryPolicy(status_overrides={700: "transient"})
    with pytest.raises(ValidationError, match="dotted"):
        RetryPolicy(type_overrides={"not a name": "transient"})
    with pytest.raises(ValidationError):
        RetryPolicy(type_overrides={"x.Y": "maybe"})
    assert RetryPolicy.model_validate_json('{"status_overrides": {"404": "transient"}}') == policy


def test_hooks_see_each_decision() -> None:
    recorder = Recorder()
    policy = RetryPolicy(max_attempts=2, jitter="none")
    policy.decide(TRANSIENT, 1, 0.5, hooks=[recorder], name="job-1")
    policy.decide(TRANSIENT, 2, 1.5, hooks=[recorder], name="job-1")
    policy.decide(ValueError(), 1, 0.0, hooks=[recorder])
    first, second, third = recorder.events
    assert (first.name, first.attempt, first.elapsed, first.delay) == ("job-1", 1, 0.5, 0.5)
    assert first.will_retry
    assert first.reason is None
    assert (first.error_type, first.error_code, first.status, first.transient) == (
        "chatsvg_core.errors.ProviderTransientError",
        "provider_transient",
        503,
        True,
    )
    assert second.reason is GiveUpReason.ATTEMPTS_EXHAUSTED
    assert second.delay is None
    assert (third.transient, third.rule, third.reason) == (False, "unknown", "permanent")


def test_decide_without_hooks_reports_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="chatsvg_core.retry"):
        RetryPolicy().decide(TRANSIENT, 1, 0.0)
    assert caplog.records == []


def test_the_logging_hook_writes_structured_fields(caplog: pytest.LogCaptureFixture) -> None:
    policy = RetryPolicy(max_attempts=2, jitter="none")
    error = httpx.HTTPStatusError(
        "x",
        request=httpx.Request("GET", "http://127.0.0.1/"),
        response=httpx.Response(429, headers={"Retry-After": "3"}),
    )
    with caplog.at_level(logging.DEBUG, logger="chatsvg_core.retry"):
        policy.decide(error, 1, 0.25, hooks=[LoggingHook()], name="call")
        policy.decide(error, 2, 3.5, hooks=[LoggingHook()], name="call")
        policy.decide(KeyError(), 1, 0.0, hooks=[LoggingHook()])
    scheduled, gave_up, permanent = caplog.records
    assert scheduled.levelno == logging.WARNING
    assert scheduled.getMessage() == (
        "Retrying call after attempt 1 failed with http_429; next try in 3.00 s."
    )
    assert scheduled.chatsvg_event == "retry_scheduled"  # type: ignore[attr-defined]
    fields = {k: v for k, v in vars(scheduled).items() if k.startswith("retry_")}
    assert fields == {
        "retry_name": "call",
        "retry_attempt": 1,
        "retry_delay": 3.0,
        "retry_elapsed": 0.25,
        "retry_will_retry": True,
        "retry_reason": None,
        "retry_error_type": "httpx.HTTPStatusError",
        "retry_error_code": "http_429",
        "retry_status": 429,
        "retry_transient": True,
        "retry_rule": "status:429",
    }
    assert gave_up.getMessage() == (
        "Gave up on call after attempt 2 (attempts_exhausted): http_429."
    )
    assert gave_up.chatsvg_event == "retry_gave_up"  # type: ignore[attr-defined]
    assert gave_up.retry_reason == "attempts_exhausted"  # type: ignore[attr-defined]
    assert gave_up.levelno == logging.WARNING
    assert permanent.levelno == logging.DEBUG


def test_a_failing_hook_is_logged_and_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        def on_retry(self, event: RetryEvent) -> None:
            raise RuntimeError("exporter down")

    recorder = Recorder()
    with caplog.at_level(logging.ERROR, logger="chatsvg_core.retry"):
        decision = RetryPolicy().decide(TRANSIENT, 1, 0.0, hooks=[Broken(), recorder])
    assert decision.will_retry
    assert len(recorder.events) == 1
    assert "exporter down" in caplog.text


def test_process_wide_hooks_are_configurable() -> None:
    original = get_on_retry_hooks()
    assert any(isinstance(h, LoggingHook) for h in original)
    recorder = Recorder()
    try:
        set_on_retry_hooks([recorder])
        assert get_on_retry_hooks() == (recorder,)
        with pytest.raises(TypeError):
            set_on_retry_hooks([object()])  # type: ignore[list-item]
        set_on_retry_hooks(None)
        assert isinstance(get_on_retry_hooks()[0], LoggingHook)
    finally:
        set_on_retry_hooks(original)


def test_the_testing_switch_removes_waits_and_caps_attempts() -> None:
    policy = RetryPolicy(max_attempts=5, initial_delay=10, max_delay=10, jitter="none")
    assert policy.decide(TRANSIENT, 1, 0.0) == Retry(10.0)
    with retry_testing():
        assert policy.decide(TRANSIENT, 1, 0.0) == Retry(0.0)
        assert policy.delay(1) == 10.0  # the pure function is untouched
        with retry_testing(attempts=2) as mode:
            assert mode.attempts == 2
            assert policy.decide(TRANSIENT, 2, 0.0) == GiveUp(GiveUpReason.ATTEMPTS_EXHAUSTED)
        assert policy.decide(TRANSIENT, 2, 0.0) == Retry(0.0)
    assert get_testing() is None
    set_testing(True, attempts=1)
    try:
        assert policy.decide(TRANSIENT, 1, 0.0) == GiveUp(GiveUpReason.ATTEMPTS_EXHAUSTED)
    finally:
        set_testing(False)
    with pytest.raises(ValueError, match="attempts"):
        set_testing(True, attempts=0)
    assert policy.decide(TRANSIENT, 1, 0.0) == Retry(10.0)
