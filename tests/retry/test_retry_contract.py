"""The retry policy's exact edges, from the survivors of a mutation run (docs/mutation.md)."""

from __future__ import annotations

import random

import pytest

from chatsvg_core.errors import TransientError
from chatsvg_core.retry import GiveUp, GiveUpReason, Jitter, Retry, RetryBudget, RetryPolicy


class _Edge(random.Random):
    """A generator whose ``uniform(a, b)`` always answers one end: shows which range is drawn."""

    def __init__(self, end: str) -> None:
        super().__init__(0)
        self.end = end
        self.calls: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return a if self.end == "low" else b


def policy(**fields: object) -> RetryPolicy:
    base: dict[str, object] = {
        "max_attempts": 10,
        "initial_delay": 1.0,
        "multiplier": 2.0,
        "max_delay": 1000.0,
        "jitter": Jitter.NONE,
        "deadline": 100.0,
    }
    return RetryPolicy.model_validate({**base, **fields})


BLIP = TransientError("blip")


def test_the_deadline_itself_is_too_late_to_start_again() -> None:
    p = policy()
    assert p.decide(BLIP, 1, 100.0) == GiveUp(GiveUpReason.DEADLINE)
    assert isinstance(p.decide(BLIP, 1, 98.9), Retry)


def test_a_next_attempt_that_starts_exactly_at_the_deadline_is_still_allowed() -> None:
    p = policy()  # after attempt 1 the wait is exactly 1 s (no jitter)
    assert p.decide(BLIP, 1, 99.0) == Retry(1.0)
    assert p.decide(BLIP, 1, 99.0 + 1e-9) == GiveUp(GiveUpReason.DEADLINE)


def test_equal_jitter_draws_from_the_upper_half_only() -> None:
    p = policy(jitter=Jitter.EQUAL, initial_delay=10.0)
    low, high = _Edge("low"), _Edge("high")
    assert p.delay(1, rng=low) == 5.0
    assert p.delay(1, rng=high) == 10.0
    assert low.calls == [(0.0, 5.0)]


def test_full_jitter_draws_from_zero_to_the_bound() -> None:
    p = policy(jitter=Jitter.FULL, initial_delay=8.0)
    low = _Edge("low")
    assert p.delay(1, rng=low) == 0.0
    assert low.calls == [(0.0, 8.0)]


def test_decorrelated_jitter_without_a_previous_delay_grows_from_the_last_bound() -> None:
    # attempt 3 without `previous`: the bound of attempt 2 (2 s) stands in; the range is [1, 6].
    p = policy(jitter=Jitter.DECORRELATED)
    high = _Edge("high")
    assert p.delay(3, rng=high) == 6.0
    assert high.calls == [(1.0, 6.0)]
    assert p.delay(1, rng=_Edge("high")) == 3.0  # the first: from initial_delay


def test_decide_hands_the_previous_delay_to_decorrelated_jitter() -> None:
    p = policy(jitter=Jitter.DECORRELATED)
    assert p.decide(BLIP, 3, 0.0, rng=_Edge("high"), previous=10.0) == Retry(30.0)
    assert p.decide(BLIP, 3, 0.0, rng=_Edge("high")) == Retry(6.0)


def test_decide_spends_from_the_budget_it_is_given() -> None:
    budget = RetryBudget()  # from full, four failures in a row are retried, the fifth is not
    p = policy()
    for _ in range(4):
        assert isinstance(p.decide(BLIP, 1, 0.0, budget=budget), Retry)
    assert p.decide(BLIP, 1, 0.0, budget=budget) == GiveUp(GiveUpReason.BUDGET_EXHAUSTED)
    assert isinstance(p.decide(BLIP, 1, 0.0), Retry)  # no budget given: none spent


def test_the_argument_rules_are_named() -> None:
    p = policy()
    for call in (lambda: p.delay(0), lambda: p.backoff_bound(0), lambda: p.decide(BLIP, 0, 0.0)):
        with pytest.raises(ValueError, match=r"^attempt numbers start at 1$"):
            call()
    for elapsed in (-1.0, float("nan")):
        with pytest.raises(ValueError, match=r"^elapsed must be a non-negative number of seconds$"):
            p.decide(BLIP, 1, elapsed)


def test_zero_backoff_at_the_deadline_itself_gives_up() -> None:
    # With no wait to push it past the deadline, only `elapsed >= deadline` stops it.
    p = policy(initial_delay=0.0)
    assert p.decide(BLIP, 1, 100.0) == GiveUp(GiveUpReason.DEADLINE)
    assert p.decide(BLIP, 1, 99.999) == Retry(0.0)


def test_a_previous_delay_below_one_second_is_used_as_it_is() -> None:
    # [0.1, 3 * 0.5]: a short previous delay keeps the next range short; a negative one is 0.
    p = policy(jitter=Jitter.DECORRELATED, initial_delay=0.1)
    assert p.delay(2, rng=_Edge("high"), previous=0.5) == 1.5
    assert p.delay(2, rng=_Edge("high"), previous=-4.0) == 0.1


def test_the_http_status_range_is_inclusive_at_both_ends() -> None:
    assert set(policy(status_overrides={100: "transient", 599: "permanent"}).status_overrides) == {
        100,
        599,
    }
    for status in (99, 600):
        with pytest.raises(ValueError, match=rf"status override {status} is not an HTTP status"):
            policy(status_overrides={status: "transient"})


def test_a_type_override_name_may_have_200_characters_and_no_more() -> None:
    name = "m." + "C" * 198
    assert list(policy(type_overrides={name: "transient"}).type_overrides) == [name]
    with pytest.raises(ValueError, match="is not a dotted class name"):
        policy(type_overrides={name + "C": "transient"})


def test_a_refused_type_override_is_quoted_to_50_characters() -> None:
    name = "not a name " * 10
    with pytest.raises(ValueError) as caught:
        policy(type_overrides={name: "transient"})
    assert f"type override {name[:50]!r} is not a dotted class name" in str(caught.value)
    assert name[:51] not in str(caught.value)


def test_the_hash_reads_every_field() -> None:
    # Equal policies hash equal (tests/retry/test_retry_decide.py); a policy used as a
    # key must also hash apart from one that differs in any single field.
    base = policy()
    changes: dict[str, object] = {
        "max_attempts": 3,
        "initial_delay": 2.0,
        "multiplier": 3.0,
        "max_delay": 999.0,
        "jitter": Jitter.FULL,
        "deadline": 50.0,
        "honour_retry_after": False,
        "retry_after_cap": 5.0,
        "status_overrides": {404: "transient"},
        "type_overrides": {"x.Y": "permanent"},
        "classifier": lambda exc: None,
    }
    hashes = {hash(base)} | {hash(policy(**{field: value})) for field, value in changes.items()}
    assert len(hashes) == len(changes) + 1
