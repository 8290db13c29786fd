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
