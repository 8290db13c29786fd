"""The tenacity bridge: same decisions as ``decide``, no real sleeping, real HTTP on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import tenacity
from hypothesis import given, settings
from hypothesis import strategies as st
from retry_strategies import policies

from chatsvg_core import errors
from chatsvg_core.retry import (
    GiveUpReason,
    Jitter,
    RetryBudget,
    RetryEvent,
    RetryPolicy,
    retry_testing,
)


class Recorder:
    def __init__(self) -> None:
        self.events: list[RetryEvent] = []

    def on_retry(self, event: RetryEvent) -> None:
        self.events.append(event)


class Flaky:
    """Fails ``failures`` times with ``error``, then returns ``"ok"``."""

    def __init__(self, failures: int, error: BaseException | None = None) -> None:
        self.failures = failures
        self.error = error or errors.ProviderTransientError("busy", status=503)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"

    async def acall(self) -> str:
        await asyncio.sleep(0)
        return self()


def expected_waits(policy: RetryPolicy, seed: int, count: int) -> list[float]:
    rng = random.Random(seed)
    waits: list[float] = []
    previous: float | None = None
    for attempt in range(1, count + 1):
        previous = policy.delay(attempt, rng=rng, previous=previous)
        waits.append(previous)
    return waits


def unlimited(policy: RetryPolicy) -> RetryPolicy:
    return RetryPolicy.model_validate({**policy.model_dump(), "deadline": None})


@settings(max_examples=60)
@given(policies(), st.integers(0, 2**32), st.integers(0, 12))
def test_recorded_waits_equal_policy_delay_with_a_seeded_rng(
    policy: RetryPolicy, seed: int, failures: int
) -> None:
    policy = unlimited(policy)
    slept: list[float] = []
    flaky = Flaky(failures)
    retrying = policy.retrying(rng=random.Random(seed), sleep=slept.append, hooks=())
    if failures < policy.max_attempts:
        assert retrying(flaky) == "ok"
        assert flaky.calls == failures + 1
    else:
        with pytest.raises(errors.ProviderTransientError) as caught:
            retrying(flaky)
        assert caught.value is flaky.error
        assert flaky.calls == policy.max_attempts
    nonzero = [w for w in expected_waits(policy, seed, flaky.calls - 1) if w > 0]
    assert slept == nonzero  # zero waits are not slept at all


@settings(max_examples=40)
@given(policies(), st.integers(0, 2**32), st.integers(0, 12))
async def test_async_recorded_waits_equal_policy_delay(
    policy: RetryPolicy, seed: int, failures: int
) -> None:
    policy = unlimited(policy)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    flaky = Flaky(failures)
    retrying = policy.async_retrying(rng=random.Random(seed), sleep=sleep, hooks=())
    if failures < policy.max_attempts:
        assert await retrying(flaky.acall) == "ok"
    else:
        with pytest.raises(errors.ProviderTransientError):
            await retrying(flaky.acall)
    assert flaky.calls == min(failures + 1, policy.max_attempts)
    assert slept == expected_waits(policy, seed, flaky.calls - 1)


@settings(max_examples=60)
@given(policies(), st.integers(0, 200))
def test_attempts_never_exceed_max_attempts_through_the_bridge(
    policy: RetryPolicy, failures: int
) -> None:
    flaky = Flaky(failures)
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    retrying = policy.retrying(sleep=sleep, monotonic=lambda: clock[0], hooks=())
    with contextlib.suppress(errors.ProviderTransientError):
        retrying(flaky)
    assert 1 <= flaky.calls <= policy.max_attempts
    if policy.deadline is not None:
        assert clock[0] <= policy.deadline


def test_the_original_typed_error_is_reraised_not_retry_error() -> None:
    policy = RetryPolicy(max_attempts=3)
    flaky = Flaky(10)
    with pytest.raises(errors.ProviderTransientError) as caught:
        policy.retrying(sleep=lambda s: None, hooks=())(flaky)
    assert caught.value is flaky.error
    assert flaky.calls == 3


def test_a_permanent_error_is_not_retried() -> None:
    flaky = Flaky(5, errors.ProviderPermanentError("bad key", status=401))
    slept: list[float] = []
    with pytest.raises(errors.ProviderPermanentError):
        RetryPolicy().retrying(sleep=slept.append, hooks=())(flaky)
    assert (flaky.calls, slept) == (1, [])


def test_unknown_errors_are_not_retried_but_overrides_are_honoured() -> None:
    flaky = Flaky(2, KeyError("k"))
    with pytest.raises(KeyError):
        RetryPolicy().retrying(sleep=lambda s: None, hooks=())(flaky)
    assert flaky.calls == 1
    flaky = Flaky(2, KeyError("k"))
    policy = RetryPolicy(type_overrides={"builtins.KeyError": "transient"})
    assert policy.retrying(sleep=lambda s: None, hooks=())(flaky) == "ok"
    assert flaky.calls == 3


def test_the_deadline_stops_the_loop_on_an_injected_clock() -> None:
    policy = RetryPolicy(max_attempts=100, deadline=10, initial_delay=3, max_delay=3, jitter="none")
    clock = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    recorder = Recorder()
    flaky = Flaky(100)
    with pytest.raises(errors.ProviderTransientError):
        policy.retrying(sleep=sleep, monotonic=lambda: clock[0], hooks=[recorder])(flaky)
    assert slept == [3.0, 3.0, 3.0]  # a fourth wait would end at 12 > 10
    assert flaky.calls == 4
    assert recorder.events[-1].reason is GiveUpReason.DEADLINE


def test_hooks_hear_each_retry_and_the_give_up() -> None:
    recorder = Recorder()
    policy = RetryPolicy(max_attempts=3, jitter="none", deadline=None)
    flaky = Flaky(5)
    with pytest.raises(errors.ProviderTransientError):
        policy.retrying(sleep=lambda s: None, hooks=[recorder], name="gen")(flaky)
    assert [(e.attempt, e.will_retry, e.delay, e.reason) for e in recorder.events] == [
        (1, True, 0.5, None),
        (2, True, 1.0, None),
        (3, False, None, GiveUpReason.ATTEMPTS_EXHAUSTED),
    ]
    assert {e.name for e in recorder.events} == {"gen"}


def test_default_hooks_log_with_the_function_name(caplog: pytest.LogCaptureFixture) -> None:
    def generate() -> str:
        raise httpx.ReadTimeout("slow")

    with (
        caplog.at_level(logging.WARNING, logger="chatsvg_core.retry"),
        pytest.raises(httpx.ReadTimeout),
    ):
        RetryPolicy(max_attempts=2).retrying(sleep=lambda s: None)(generate)
    scheduled, gave_up = caplog.records
    assert scheduled.retry_name.endswith("generate")  # type: ignore[attr-defined]
    assert scheduled.retry_error_type == "httpx.ReadTimeout"  # type: ignore[attr-defined]
    assert gave_up.retry_reason == "attempts_exhausted"  # type: ignore[attr-defined]


def test_the_budget_is_spent_by_failures_and_refunded_by_successes() -> None:
    budget = RetryBudget(max_tokens=10, token_ratio=0.5)
    policy = RetryPolicy(max_attempts=10, deadline=None)
    retrying = policy.retrying(sleep=lambda s: None, budget=budget, hooks=())
    assert retrying(Flaky(2)) == "ok"
    assert budget.tokens == 10 - 2 + 0.5
    recorder = Recorder()
    retrying = policy.retrying(sleep=lambda s: None, budget=budget, hooks=[recorder])
    flaky = Flaky(100)
    with pytest.raises(errors.ProviderTransientError):
        retrying(flaky)
    # 8.5 → 7.5, 6.5, 5.5 allowed; the failure to 4.5 is not retried
    assert flaky.calls == 4
    assert recorder.events[-1].reason is GiveUpReason.BUDGET_EXHAUSTED


def test_the_testing_switch_skips_sleeping() -> None:
    policy = RetryPolicy(initial_delay=30, max_delay=30, jitter="none")
    slept: list[float] = []
    with retry_testing():
        assert policy.retrying(sleep=slept.append, hooks=())(Flaky(3)) == "ok"
    assert slept == []
    with retry_testing(attempts=2):
        flaky = Flaky(3)
        with pytest.raises(errors.ProviderTransientError):
            policy.retrying(sleep=slept.append, hooks=())(flaky)
        assert flaky.calls == 2


async def test_the_testing_switch_skips_async_sleeping_with_the_default_sleep() -> None:
    policy = RetryPolicy(initial_delay=30, max_delay=30, jitter="none")
    flaky = Flaky(3)
    with retry_testing():
        assert await asyncio.wait_for(policy.async_retrying(hooks=())(flaky.acall), 5) == "ok"


def test_iterator_and_decorator_forms() -> None:
    policy = RetryPolicy(max_attempts=4)
    flaky = Flaky(2)
    for attempt in policy.retrying(sleep=lambda s: None, hooks=()):
        with attempt:
            result = flaky()
    assert (result, flaky.calls) == ("ok", 3)

    calls = Flaky(1)

    @policy.retrying(sleep=lambda s: None, hooks=()).wraps
    def wrapped() -> str:
        return calls()

    assert wrapped() == "ok"
    assert calls.calls == 2


async def test_async_iterator_form() -> None:
    policy = RetryPolicy(max_attempts=4)

    async def no_sleep(seconds: float) -> None:
        return None

    flaky = Flaky(2)
    async for attempt in policy.async_retrying(sleep=no_sleep, hooks=()):
        with attempt:
            result = await flaky.acall()
    assert (result, flaky.calls) == ("ok", 3)


def test_one_retrying_object_shared_by_threads_keeps_calls_apart() -> None:
    policy = RetryPolicy(max_attempts=6, deadline=None, jitter="none", initial_delay=0.001)
    recorder = Recorder()
    retrying = policy.retrying(hooks=[recorder])  # real (tiny) sleeps, so threads interleave
    results: dict[int, tuple[str, int]] = {}
    barrier = threading.Barrier(6)

    def worker(i: int) -> None:
        flaky = Flaky(i % 5)
        barrier.wait()
        results[i] = (retrying(flaky), flaky.calls)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: ("ok", i % 5 + 1) for i in range(6)}
    assert sorted(e.attempt for e in recorder.events) == sorted(
        a for i in range(6) for a in range(1, i % 5 + 1)
    )


def test_cancellation_is_never_retried() -> None:
    flaky = Flaky(3, KeyboardInterrupt())
    policy = RetryPolicy(classifier=lambda exc: True)
    with pytest.raises(KeyboardInterrupt):
        policy.retrying(sleep=lambda s: None, hooks=())(flaky)
    assert flaky.calls == 1


# --- real HTTP on loopback ------------------------------------------------------


class Script:
    """What the loopback server answers, in order: (status, headers)."""

    def __init__(self, answers: list[tuple[int, dict[str, str]]]) -> None:
        self.answers = answers
        self.seen = 0
        self.lock = threading.Lock()

    def next(self) -> tuple[int, dict[str, str]]:
        with self.lock:
            answer = self.answers[min(self.seen, len(self.answers) - 1)]
            self.seen += 1
            return answer


@pytest.fixture
def server() -> Iterator[tuple[str, list[Script]]]:
    scripts: list[Script] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            status, headers = scripts[0].next()
            body = b'{"ok": true}'
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1/chat", scripts
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def post(client: httpx.Client, url: str) -> int:
    response = client.post(url, json={"prompt": "a cat"})
    response.raise_for_status()
    return response.status_code


def test_loopback_503_with_retry_after_then_success(server: tuple[str, list[Script]]) -> None:
    url, scripts = server
    scripts.append(Script([(503, {"Retry-After": "2"}), (429, {"Retry-After": "7"}), (200, {})]))
    slept: list[float] = []
    policy = RetryPolicy(jitter="none")
    with httpx.Client(timeout=5) as client:
        assert policy.retrying(sleep=slept.append, hooks=())(post, client, url) == 200
    assert slept == [2.0, 7.0]
    assert scripts[0].seen == 3


def test_loopback_400_is_not_retried(server: tuple[str, list[Script]]) -> None:
    url, scripts = server
    scripts.append(Script([(400, {}), (200, {})]))
    with httpx.Client(timeout=5) as client, pytest.raises(httpx.HTTPStatusError) as caught:
        RetryPolicy().retrying(sleep=lambda s: None, hooks=())(post, client, url)
    assert caught.value.response.status_code == 400
    assert scripts[0].seen == 1


def test_loopback_connection_refused_is_retried() -> None:
    with socket_closed_port() as url, httpx.Client(timeout=2) as client:
        slept: list[float] = []
        policy = RetryPolicy(max_attempts=3, jitter=Jitter.NONE)
        with pytest.raises(httpx.ConnectError):
            policy.retrying(sleep=slept.append, hooks=())(post, client, url)
        assert slept == [0.5, 1.0]


async def test_async_loopback_retries(server: tuple[str, list[Script]]) -> None:
    url, scripts = server
    scripts.append(Script([(502, {}), (504, {}), (200, {})]))
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def apost(client: httpx.AsyncClient) -> int:
        response = await client.post(url, json={"prompt": "a cat"})
        response.raise_for_status()
        return response.status_code

    policy = RetryPolicy(jitter="none")
    async with httpx.AsyncClient(timeout=5) as client:
        assert await policy.async_retrying(sleep=sleep, hooks=())(apost, client) == 200
    assert slept == [0.5, 1.0]


class socket_closed_port:
    """A loopback URL on a port that was just bound and released (nothing listens)."""

    def __enter__(self) -> str:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/chat"

    def __exit__(self, *exc: object) -> None:
        return None


def test_tenacity_objects_are_plain_tenacity() -> None:
    assert isinstance(RetryPolicy().retrying(), tenacity.Retrying)
    assert isinstance(RetryPolicy().async_retrying(), tenacity.AsyncRetrying)


def test_the_injected_wall_clock_reads_http_date_retry_after() -> None:
    from chatsvg_core.testing import FakeClock

    clock = FakeClock()  # 2026-01-01T00:00:00Z
    flaky = Flaky(
        1, errors.ProviderTransientError("busy", retry_after="Thu, 01 Jan 2026 00:00:12 GMT")
    )
    slept: list[float] = []
    assert RetryPolicy().retrying(sleep=slept.append, clock=clock, hooks=())(flaky) == "ok"
    assert slept == [12.0]


async def test_one_async_retrying_object_shared_by_tasks_keeps_calls_apart() -> None:
    policy = RetryPolicy(max_attempts=6, deadline=None, jitter="none")

    async def yielding_sleep(seconds: float) -> None:
        await asyncio.sleep(0)  # let the other tasks run between attempts

    recorder = Recorder()
    retrying = policy.async_retrying(sleep=yielding_sleep, hooks=[recorder])
    flakies = [Flaky(i % 5) for i in range(8)]
    results = await asyncio.gather(*(retrying(f.acall) for f in flakies))
    assert results == ["ok"] * 8
    assert [f.calls for f in flakies] == [i % 5 + 1 for i in range(8)]
    assert len(recorder.events) == sum(i % 5 for i in range(8))


async def _no_sleep(seconds: float) -> None:
    return None


async def test_async_retrying_uses_the_injected_monotonic_clock_and_name() -> None:
    policy = RetryPolicy(max_attempts=100, deadline=10, initial_delay=3, max_delay=3, jitter="none")
    clock = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    recorder = Recorder()
    retrying = policy.async_retrying(
        sleep=sleep, monotonic=lambda: clock[0], hooks=[recorder], name="gen"
    )
    with pytest.raises(errors.ProviderTransientError):
        await retrying(Flaky(100).acall)
    assert slept == [3.0, 3.0, 3.0]  # a fourth wait would end at 12 > 10
    assert recorder.events[-1].reason is GiveUpReason.DEADLINE
    assert {e.name for e in recorder.events} == {"gen"}


async def test_async_retrying_spends_the_budget_it_is_given() -> None:
    budget = RetryBudget(max_tokens=10, token_ratio=0.5)
    policy = RetryPolicy(max_attempts=10, deadline=None)
    recorder = Recorder()
    flaky = Flaky(100)
    with pytest.raises(errors.ProviderTransientError):
        await policy.async_retrying(sleep=_no_sleep, budget=budget, hooks=[recorder])(flaky.acall)
    # 10 → 9, 8, 7, 6 allowed; the failure to 5 is not retried
    assert flaky.calls == 5
    assert recorder.events[-1].reason is GiveUpReason.BUDGET_EXHAUSTED


async def test_async_retrying_reads_http_date_retry_after_on_the_injected_clock() -> None:
    from chatsvg_core.testing import FakeClock

    flaky = Flaky(
        1, errors.ProviderTransientError("busy", retry_after="Thu, 01 Jan 2026 00:00:12 GMT")
    )
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    retrying = RetryPolicy().async_retrying(sleep=sleep, clock=FakeClock(), hooks=())
    assert await retrying(flaky.acall) == "ok"
    assert slept == [12.0]
