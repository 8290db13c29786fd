"""The provider call's in-process retries: tenacity only after a first failure, same decisions.

The engine runs the first try bare and hands over to the call policy's
tenacity loop only when it fails (issue 15: the loop's setup cost ~10% of a
job's CPU). These tests hold the hand-over to what the loop alone did: the
same calls, the same decisions reported to the hooks, and a deadline that
counts the first try's time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from chatsvg_core import Engine, GenerationRequest, ProviderOutput, RetryPolicy
from chatsvg_core.errors import ProviderTransientError
from chatsvg_core.jobs import JobStatus
from chatsvg_core.retry import RetryEvent, retry_testing, set_on_retry_hooks
from chatsvg_core.storage import MemoryStore

from ._support import SVG, ScriptedProvider


class Recorder:
    def __init__(self) -> None:
        self.events: list[RetryEvent] = []

    def on_retry(self, event: RetryEvent) -> None:
        self.events.append(event)


@pytest.fixture
def hooks() -> Iterator[Recorder]:
    recorder = Recorder()
    set_on_retry_hooks([recorder])
    try:
        yield recorder
    finally:
        set_on_retry_hooks(None)


async def _run(provider: object, call_policy: RetryPolicy) -> tuple[JobStatus, Engine]:
    store = MemoryStore()
    engine = Engine(
        store,
        None,
        provider,  # type: ignore[arg-type]
        call_policy=call_policy,
        policy=RetryPolicy(max_attempts=1),
    )
    from chatsvg_core import Ledger

    await Ledger(store).grant("o", 10)
    await engine.submit("o", None, {"prompt": "a cat"})
    job = await engine.process_next("w")
    assert job is not None
    return job.status, engine


@pytest.mark.parametrize(
    ("script", "calls", "status", "decisions"),
    [
        (["ok"], 1, JobStatus.SUCCEEDED, []),
        (["transient", "ok"], 2, JobStatus.SUCCEEDED, [(1, True)]),
        (["transient", "transient", "ok"], 3, JobStatus.SUCCEEDED, [(1, True), (2, True)]),
        (
            ["transient", "transient", "transient"],
            3,
            JobStatus.FAILED,
            [(1, True), (2, True), (3, False)],
        ),
        (["permanent"], 1, JobStatus.FAILED, [(1, False)]),
        (["transient", "permanent"], 2, JobStatus.FAILED, [(1, True), (2, False)]),
    ],
)
async def test_calls_and_reported_decisions_are_the_policys(
    hooks: Recorder,
    script: list[str],
    calls: int,
    status: JobStatus,
    decisions: list[tuple[int, bool]],
) -> None:
    provider = ScriptedProvider(script)
    provider.default = "transient"
    with retry_testing():
        got, _ = await _run(provider, RetryPolicy(max_attempts=3, jitter="none"))
    assert provider.calls == calls
    assert got is status
    assert [(e.attempt, e.will_retry) for e in hooks.events if e.name == "provider"] == decisions


class SlowThenFine:
    """The first call takes ``first`` seconds and fails transiently; later calls answer."""

    name = "slow"

    def __init__(self, first: float) -> None:
        self.first = first
        self.calls = 0

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        self.calls += 1
        if self.calls == 1:
            await asyncio.sleep(self.first)
            raise ProviderTransientError("503", provider=self.name, status=503)
        return ProviderOutput(text=SVG, model="m", provider=self.name, latency_s=0.0)


async def test_the_deadline_counts_the_first_try(hooks: Recorder) -> None:
    # The first try alone outlasts the deadline: the policy gives up, as the
    # tenacity loop did when it made that try itself (its clock started then).
    provider = SlowThenFine(first=0.3)
    with retry_testing():
        got, _ = await _run(provider, RetryPolicy(max_attempts=3, jitter="none", deadline=0.2))
    assert provider.calls == 1
    assert got is JobStatus.FAILED
    [event] = [e for e in hooks.events if e.name == "provider"]
    assert not event.will_retry
    assert event.elapsed >= 0.3


async def test_within_the_deadline_the_first_failure_is_retried(hooks: Recorder) -> None:
    provider = SlowThenFine(first=0.05)
    with retry_testing():
        got, _ = await _run(provider, RetryPolicy(max_attempts=3, jitter="none", deadline=5))
    assert provider.calls == 2
    assert got is JobStatus.SUCCEEDED
    [event] = [e for e in hooks.events if e.name == "provider"]
    assert event.will_retry and event.attempt == 1 and event.elapsed >= 0.05
