"""``RetryBudget``: the gRPC-style token bucket, against a model and under threads."""

from __future__ import annotations

import asyncio
import threading
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from chatsvg_core.retry import RetryBudget

sizes = st.integers(1, 1000).map(lambda n: n / 10)  # 0.1 .. 100, one decimal
ratios = st.integers(1, 1000).map(lambda n: n / 1000)  # 0.001 .. 1


class BudgetMachine(RuleBasedStateMachine):
    """The bucket against an exact model in fractions."""

    def __init__(self) -> None:
        super().__init__()
        self.budget: RetryBudget | None = None
        self.tokens = Fraction(0)
        self.max = Fraction(0)
        self.ratio = Fraction(0)

    @precondition(lambda self: self.budget is None)
    @rule(size=sizes, ratio=ratios)
    def create(self, size: float, ratio: float) -> None:
        ratio = min(ratio, size)
        self.budget = RetryBudget(max_tokens=size, token_ratio=ratio)
        self.max = Fraction(str(size))
        self.ratio = Fraction(str(ratio))
        self.tokens = self.max

    @precondition(lambda self: self.budget is not None)
    @rule()
    def success(self) -> None:
        assert self.budget is not None
        self.budget.record_success()
        self.tokens = min(self.max, self.tokens + self.ratio)

    @precondition(lambda self: self.budget is not None)
    @rule()
    def failure(self) -> None:
        assert self.budget is not None
        self.budget.record_failure()
        self.tokens = max(Fraction(0), self.tokens - 1)

    @precondition(lambda self: self.budget is not None)
    @rule()
    def fail_and_check(self) -> None:
        assert self.budget is not None
        allowed = self.budget.fail_and_check()
        self.tokens = max(Fraction(0), self.tokens - 1)
        assert allowed == (self.tokens > self.max / 2)

    @invariant()
    def matches_the_model(self) -> None:
        if self.budget is None:
            return
        assert Fraction(str(self.budget.tokens)) == self.tokens
        assert 0 <= self.budget.tokens <= self.budget.max_tokens
        assert self.budget.allows_retry() == (self.tokens > self.max / 2)


TestBudgetMachine = BudgetMachine.TestCase
TestBudgetMachine.settings = settings(max_examples=100, stateful_step_count=60)


@given(st.integers(0, 200), st.integers(0, 200))
def test_the_bucket_stays_within_its_bounds(failures: int, successes: int) -> None:
    budget = RetryBudget()
    for _ in range(failures):
        budget.record_failure()
    assert budget.tokens == max(0, 10 - failures)
    for _ in range(successes):
        budget.record_success()
    assert 0 <= budget.tokens <= 10


def test_the_documented_numbers() -> None:
    budget = RetryBudget()
    assert (budget.max_tokens, budget.token_ratio) == (10, 0.1)
    # four failures in a row are still retried; the fifth is not
    assert [budget.fail_and_check() for _ in range(5)] == [True, True, True, True, False]
    assert not budget.allows_retry()
    # one success lifts the bucket just above half, but the next failure drops it again;
    # at exactly ten successes per failure the level only holds, so retries stay off
    budget.record_success()
    assert budget.allows_retry()
    assert not budget.fail_and_check()
    for _ in range(10):
        budget.record_success()
    assert budget.tokens == pytest.approx(5.1)
    assert budget.fail_and_check() is False


@pytest.mark.parametrize(
    ("size", "ratio"), [(0, 0.1), (-1, 0.1), (10, 0), (10, 11), (1001, 1), (0.0001, 0.0001)]
)
def test_bad_settings_are_refused(size: float, ratio: float) -> None:
    with pytest.raises(ValueError, match=r"max_tokens|token_ratio"):
        RetryBudget(max_tokens=size, token_ratio=ratio)


def test_threads_sharing_a_budget_lose_no_update() -> None:
    budget = RetryBudget(max_tokens=1000, token_ratio=1)
    allowed: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        mine = [budget.fail_and_check() for _ in range(100)]
        with lock:
            allowed.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 800 failures from a full bucket of 1000: exactly the ones leaving > 500 were allowed
    assert budget.tokens == 200
    assert allowed.count(True) == 499


async def test_tasks_sharing_a_budget() -> None:
    budget = RetryBudget(max_tokens=100, token_ratio=0.5)

    async def caller(i: int) -> None:
        for _ in range(10):
            await asyncio.sleep(0)
            if i % 2:
                budget.record_success()
            else:
                budget.fail_and_check()

    await asyncio.gather(*(caller(i) for i in range(10)))
    # 50 failures and 50 successes of 0.5 from a full bucket; the cap may have eaten refunds
    assert 50 <= budget.tokens <= 75
    assert "RetryBudget(tokens=" in repr(budget)
