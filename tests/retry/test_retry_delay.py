"""``RetryPolicy.delay``: bounds of every jitter kind, monotone bound, determinism."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from retry_strategies import delays, policies

from chatsvg_core.retry import DECORRELATED_FACTOR, Jitter, RetryPolicy

attempts = st.integers(min_value=1, max_value=2000)
seeds = st.integers(min_value=0, max_value=2**32)
previous = st.none() | delays


@given(policies(), attempts, seeds, previous)
def test_every_computed_delay_is_within_zero_and_max_delay(
    policy: RetryPolicy, attempt: int, seed: int, prev: float | None
) -> None:
    delay = policy.delay(attempt, rng=random.Random(seed), previous=prev)
    assert 0 <= delay <= policy.max_delay
    assert math.isfinite(delay)


@given(policies(), attempts, seeds, delays)
def test_an_honoured_retry_after_is_used_capped_and_never_negative(
    policy: RetryPolicy, attempt: int, seed: int, retry_after: float
) -> None:
    delay = policy.delay(attempt, rng=random.Random(seed), retry_after=retry_after)
    if policy.honour_retry_after:
        assert delay == min(retry_after, policy.retry_after_cap)
    else:
        assert 0 <= delay <= policy.max_delay


@given(policies(), st.floats(max_value=0, allow_nan=False, allow_infinity=True))
def test_a_negative_retry_after_means_no_wait(policy: RetryPolicy, retry_after: float) -> None:
    if policy.honour_retry_after:
        assert policy.delay(1, retry_after=retry_after) == 0.0


@given(policies(jitter=Jitter.NONE), st.integers(1, 500))
def test_the_unjittered_sequence_is_non_decreasing(policy: RetryPolicy, n: int) -> None:
    seq = [policy.delay(a) for a in range(n, n + 30)]
    assert seq == sorted(seq)
    assert seq == [policy.backoff_bound(a) for a in range(n, n + 30)]


@given(policies(), attempts)
def test_the_bound_is_the_capped_exponential(policy: RetryPolicy, attempt: int) -> None:
    bound = policy.backoff_bound(attempt)
    try:
        exact = policy.initial_delay * policy.multiplier ** (attempt - 1)
    except OverflowError:
        exact = math.inf if policy.initial_delay > 0 else 0.0
    assert bound == min(policy.max_delay, exact)


@given(policies(jitter=Jitter.FULL), attempts, seeds)
def test_full_jitter_never_exceeds_the_exponential_bound(
    policy: RetryPolicy, attempt: int, seed: int
) -> None:
    assert 0 <= policy.delay(attempt, rng=random.Random(seed)) <= policy.backoff_bound(attempt)


@given(policies(jitter=Jitter.EQUAL), attempts, seeds)
def test_equal_jitter_is_within_half_the_bound_and_the_bound(
    policy: RetryPolicy, attempt: int, seed: int
) -> None:
    bound = policy.backoff_bound(attempt)
    assert bound / 2 <= policy.delay(attempt, rng=random.Random(seed)) <= bound


@given(policies(jitter=Jitter.DECORRELATED), attempts, seeds, previous)
def test_decorrelated_jitter_is_within_initial_and_three_times_the_previous(
    policy: RetryPolicy, attempt: int, seed: int, prev: float | None
) -> None:
    delay = policy.delay(attempt, rng=random.Random(seed), previous=prev)
    if prev is None:
        prev = policy.initial_delay if attempt == 1 else policy.backoff_bound(attempt - 1)
    high = min(policy.max_delay, max(policy.initial_delay, DECORRELATED_FACTOR * prev))
    assert policy.initial_delay <= delay <= high


@given(policies(), attempts, seeds, previous)
def test_a_seeded_rng_makes_delay_deterministic(
    policy: RetryPolicy, attempt: int, seed: int, prev: float | None
) -> None:
    first = policy.delay(attempt, rng=random.Random(seed), previous=prev)
    assert first == policy.delay(attempt, rng=random.Random(seed), previous=prev)


def test_concrete_sequences() -> None:
    policy = RetryPolicy(initial_delay=1, multiplier=3, max_delay=20, jitter="none")
    assert [policy.delay(n) for n in range(1, 6)] == [1, 3, 9, 20, 20]
    full = policy.model_copy(update={"jitter": Jitter.FULL})
    rng = random.Random(7)
    expected = random.Random(7)
    assert full.delay(3, rng=rng) == pytest.approx(expected.uniform(0, 9))


def test_jitter_actually_varies() -> None:
    # A jitter that always returned the bound would pass the bound tests.
    rng = random.Random(1)
    for kind in (Jitter.FULL, Jitter.EQUAL, Jitter.DECORRELATED):
        policy = RetryPolicy(jitter=kind, initial_delay=1, max_delay=100)
        assert len({policy.delay(4, rng=rng, previous=4.0) for _ in range(50)}) > 40


def test_decorrelated_grows_from_the_previous_delay_as_aws_describes() -> None:
    policy = RetryPolicy(jitter="decorrelated", initial_delay=1, max_delay=1000)
    rng = random.Random(3)
    samples = [policy.delay(2, rng=rng, previous=100.0) for _ in range(200)]
    assert min(samples) >= 1
    assert max(samples) <= 300
    assert max(samples) > 200  # draws reach well past the exponential bound of 2


def test_huge_attempt_numbers_do_not_overflow() -> None:
    policy = RetryPolicy(multiplier=10, max_delay=60, jitter="none")
    assert policy.delay(10**6) == 60.0


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempts_start_at_one(attempt: int) -> None:
    with pytest.raises(ValueError, match="start at 1"):
        RetryPolicy().delay(attempt)


def test_zero_initial_delay_means_no_wait() -> None:
    policy = RetryPolicy(initial_delay=0, max_delay=0)
    assert {policy.delay(n, rng=random.Random(n)) for n in range(1, 10)} == {0.0}
