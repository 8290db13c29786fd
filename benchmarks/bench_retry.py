"""Overhead of a retry-wrapped call that succeeds first time.

Compares, in one run: a bare call, plain tenacity configured like the default
policy (attempts + deadline stop, full-jitter exponential wait, exception-type
predicate, reraise), and ``RetryPolicy().retrying()`` (with and without a
shared ``RetryBudget``); then the same for async calls. Prints per-call times
(best of several interleaved rounds, in process CPU time, so that other
processes on a shared machine disturb the numbers less than wall time would)
and ratios to the bare call and to plain tenacity.
Run: ``python benchmarks/bench_retry.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version

import tenacity

from chatsvg_core.retry import RetryBudget, RetryPolicy, set_on_retry_hooks

ROUNDS = 9


def work() -> int:
    return 42


async def awork() -> int:
    return 42


def plain_tenacity() -> tenacity.Retrying:
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(5) | tenacity.stop_after_delay(120),
        wait=tenacity.wait_random_exponential(multiplier=0.5, max=30),
        retry=tenacity.retry_if_exception_type((TimeoutError, ConnectionError)),
        reraise=True,
    )


def plain_async_tenacity() -> tenacity.AsyncRetrying:
    return tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(5) | tenacity.stop_after_delay(120),
        wait=tenacity.wait_random_exponential(multiplier=0.5, max=30),
        retry=tenacity.retry_if_exception_type((TimeoutError, ConnectionError)),
        reraise=True,
    )


def time_sync(call: Callable[[], object], n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        call()
    return (time.process_time() - start) / n


async def time_async(call: Callable[[], Awaitable[object]], n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        await call()
    return (time.process_time() - start) / n


def table(title: str, results: dict[str, float]) -> None:
    bare = results["bare call"]
    plain = results["plain tenacity"]
    print(f"\n{title}")
    print(f"| {'variant':<28} | {'µs/call':>9} | {'x bare':>8} | {'x tenacity':>10} |")
    print(f"|{'-' * 30}|{'-' * 11}|{'-' * 10}|{'-' * 12}|")
    for name, seconds in results.items():
        print(
            f"| {name:<28} | {seconds * 1e6:>9.2f} | {seconds / bare:>8.1f} | "
            f"{seconds / plain:>10.2f} |"
        )


def main() -> None:
    quick = "--quick" in sys.argv
    n = 2_000 if quick else 20_000
    set_on_retry_hooks(())  # nothing is logged on success anyway; keep it out of the picture
    policy = RetryPolicy()
    ours = policy.retrying()
    ours_budget = policy.retrying(budget=RetryBudget())
    plain = plain_tenacity()
    sync_variants: dict[str, Callable[[], object]] = {
        "bare call": work,
        "plain tenacity": lambda: plain(work),
        "RetryPolicy.retrying()": lambda: ours(work),
        "RetryPolicy.retrying(budget)": lambda: ours_budget(work),
    }
    best = dict.fromkeys(sync_variants, float("inf"))
    for _ in range(ROUNDS):  # interleaved, so load changes hit every variant alike
        for name, call in sync_variants.items():
            best[name] = min(best[name], time_sync(call, n))

    aours = policy.async_retrying()
    aours_budget = policy.async_retrying(budget=RetryBudget())
    aplain = plain_async_tenacity()
    async_variants: dict[str, Callable[[], Awaitable[object]]] = {
        "bare call": awork,
        "plain tenacity": lambda: aplain(awork),
        "RetryPolicy.async_retrying()": lambda: aours(awork),
        "async_retrying(budget)": lambda: aours_budget(awork),
    }
    abest = dict.fromkeys(async_variants, float("inf"))

    async def run_async() -> None:
        for _ in range(ROUNDS):
            for name, call in async_variants.items():
                abest[name] = min(abest[name], await time_async(call, n))

    asyncio.run(run_async())
    print(
        f"python {platform.python_version()}, tenacity {version('tenacity')}, "
        f"{n} calls x {ROUNDS} rounds, best round, CPU time"
    )
    table("sync: a call that succeeds first time", best)
    table("async: a call that succeeds first time", abest)


if __name__ == "__main__":
    main()
