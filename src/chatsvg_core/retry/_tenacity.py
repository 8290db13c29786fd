"""The tenacity bridge: ``Retrying`` / ``AsyncRetrying`` built from a ``RetryPolicy``.

tenacity asks three questions after each failure: should this outcome be
retried (``retry``), how long to wait (``wait``), and whether to stop
(``stop``). All three are answered here from one call to the policy's
decision, made once per failed attempt, so the in-process loop and the
job-level re-enqueue can never disagree: ``retry`` is the classification,
``wait`` the decision's delay, ``stop`` whether the decision gave up
(attempts, deadline or budget). ``reraise=True`` hands the caller the original
typed error, never tenacity's ``RetryError``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from tenacity import AsyncRetrying, RetryCallState, Retrying
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from chatsvg_core._clock import Clock, SystemClock
from chatsvg_core.retry._budget import RetryBudget
from chatsvg_core.retry._classify import Classification
from chatsvg_core.retry._decision import Decision, GiveUp, Retry
from chatsvg_core.retry._hooks import (
    RetryHook,
    emit_decision,
    get_on_retry_hooks,
    get_testing,
)

if TYPE_CHECKING:
    from chatsvg_core.retry._policy import RetryPolicy

__all__ = ["async_retrying", "retrying"]

# Per-call state lives on tenacity's own per-call object, so one Retrying can
# be shared by many threads and tasks at once without mixing their attempts.
_STATE = "_chatsvg_retry_state"


@dataclass(slots=True)
class _CallState:
    start: float
    attempt: int = 0
    decision: Decision | None = None
    verdict: Classification | None = None
    previous: float | None = None


def _call_name(retry_state: RetryCallState, name: str | None) -> str | None:
    if name is not None:
        return name
    fn = retry_state.fn
    if fn is None:
        return None
    qualname = getattr(fn, "__qualname__", None)
    module = getattr(fn, "__module__", None)
    if isinstance(qualname, str):
        return f"{module}.{qualname}" if isinstance(module, str) else qualname
    return None


class _Bridge:
    """Everything the tenacity callbacks share for one ``Retrying`` object."""

    __slots__ = (
        "budget",
        "clock",
        "hooks",
        "injected_clock",
        "monotonic",
        "name",
        "policy",
        "rng",
    )

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        hooks: Iterable[RetryHook] | None,
        budget: RetryBudget | None,
        rng: random.Random | None,
        monotonic: Callable[[], float] | None,
        clock: Clock | None,
        name: str | None,
    ) -> None:
        self.policy = policy
        # ``None`` reads the process-wide hooks at each event, so a host that
        # configures hooks after building its Retrying objects is still heard.
        self.hooks = None if hooks is None else tuple(hooks)
        self.budget = budget
        self.rng = rng
        self.injected_clock = monotonic is not None
        self.monotonic = time.monotonic if monotonic is None else monotonic
        self.clock = SystemClock() if clock is None else clock
        self.name = name

    def _hooks(self) -> tuple[RetryHook, ...]:
        return get_on_retry_hooks() if self.hooks is None else self.hooks

    def state(self, retry_state: RetryCallState) -> _CallState:
        found = retry_state.__dict__.get(_STATE)
        if isinstance(found, _CallState):
            return found
        # Created lazily at the first failure, so a call that succeeds first
        # time pays nothing for it. tenacity stamps each call's start with
        # ``time.monotonic``; an injected clock has its start noted by ``before``.
        start = self.monotonic() if self.injected_clock else retry_state.start_time
        created = _CallState(start=start)
        retry_state.__dict__[_STATE] = created
        return created

    def before(self, retry_state: RetryCallState) -> None:
        """Only installed with an injected clock: note the call's start on it."""
        if retry_state.attempt_number == 1 or _STATE not in retry_state.__dict__:
            retry_state.__dict__[_STATE] = _CallState(start=self.monotonic())

    def decision(self, retry_state: RetryCallState) -> tuple[Decision, Classification] | None:
        """The policy's decision for the current failed attempt, made once."""
        outcome = retry_state.outcome
        if outcome is None or not outcome.failed:
            return None
        state = self.state(retry_state)
        if (
            state.attempt != retry_state.attempt_number
            or state.decision is None
            or state.verdict is None
        ):
            error = outcome.exception()
            assert error is not None
            attempt = retry_state.attempt_number
            elapsed = max(0.0, self.monotonic() - state.start)
            decision, verdict = self.policy._decide(
                error,
                attempt,
                elapsed,
                rng=self.rng,
                previous=state.previous,
                budget=self.budget,
                now=self.clock.now(),
                hooks=(),
                name=None,
            )
            state.attempt, state.decision, state.verdict = attempt, decision, verdict
            if isinstance(decision, GiveUp):
                self.report(retry_state, state, decision, verdict, elapsed)
        return state.decision, state.verdict

    def report(
        self,
        retry_state: RetryCallState,
        state: _CallState,
        decision: Decision,
        verdict: Classification,
        elapsed: float,
    ) -> None:
        hooks = self._hooks()
        if not hooks:
            return
        emit_decision(
            hooks,
            name=_call_name(retry_state, self.name),
            attempt=state.attempt,
            elapsed=elapsed,
            decision=decision,
            verdict=verdict,
        )

    def before_sleep(self, retry_state: RetryCallState) -> None:
        state = self.state(retry_state)
        decision, verdict = state.decision, state.verdict
        if isinstance(decision, Retry) and verdict is not None:
            state.previous = decision.delay
            elapsed = max(0.0, self.monotonic() - state.start)
            self.report(retry_state, state, decision, verdict, elapsed)


class _PolicyRetry(retry_base):
    """Retry predicate: success refunds the budget; failures retry when transient."""

    def __init__(self, bridge: _Bridge) -> None:
        self._bridge = bridge

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is None:
            return False
        if not outcome.failed:
            budget = self._bridge.budget
            if budget is not None:
                budget.record_success()
            return False
        made = self._bridge.decision(retry_state)
        # A permanent error answers False here, so tenacity re-raises it at
        # once; a transient one that cannot be retried is stopped by _PolicyStop.
        return made is not None and made[1].transient


class _PolicyWait(wait_base):
    """Wait: the decision's delay (``Retry-After`` aware, jittered, 0 when testing)."""

    def __init__(self, bridge: _Bridge) -> None:
        self._bridge = bridge

    def __call__(self, retry_state: RetryCallState) -> float:
        made = self._bridge.decision(retry_state)
        if made is not None and isinstance(made[0], Retry):
            return made[0].delay
        return 0.0


class _PolicyStop(stop_base):
    """Stop: the decision gave up (attempts exhausted, deadline, or budget)."""

    def __init__(self, bridge: _Bridge) -> None:
        self._bridge = bridge

    def __call__(self, retry_state: RetryCallState) -> bool:
        made = self._bridge.decision(retry_state)
        return made is None or isinstance(made[0], GiveUp)


def _sync_sleep(real: Callable[[float], None]) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        if get_testing() is None and seconds > 0:
            real(float(seconds))

    return sleep


def _async_sleep(real: Callable[[float], Any]) -> Callable[[float], Awaitable[None]]:
    async def sleep(seconds: float) -> None:
        if get_testing() is None:
            result = real(float(seconds))
            if isinstance(result, Awaitable):
                await result

    return sleep


def _parts(
    policy: RetryPolicy,
    hooks: Iterable[RetryHook] | None,
    budget: RetryBudget | None,
    rng: random.Random | None,
    monotonic: Callable[[], float] | None,
    clock: Clock | None,
    name: str | None,
) -> dict[str, Any]:
    bridge = _Bridge(
        policy, hooks=hooks, budget=budget, rng=rng, monotonic=monotonic, clock=clock, name=name
    )
    parts: dict[str, Any] = {
        "stop": _PolicyStop(bridge),
        "wait": _PolicyWait(bridge),
        "retry": _PolicyRetry(bridge),
        "before_sleep": bridge.before_sleep,
        "reraise": True,
    }
    if bridge.injected_clock:
        parts["before"] = bridge.before
    return parts


def retrying(
    policy: RetryPolicy,
    *,
    hooks: Iterable[RetryHook] | None = None,
    budget: RetryBudget | None = None,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] | None = None,
    monotonic: Callable[[], float] | None = None,
    clock: Clock | None = None,
    name: str | None = None,
) -> Retrying:
    """A tenacity ``Retrying`` that follows ``policy``.

    Use it as tenacity documents: ``policy.retrying()(fn, *args)``, as a
    decorator (``@policy.retrying().wraps``), or as an iterator of attempts
    (``for attempt in policy.retrying(): with attempt: ...``). One object may be
    shared by many threads: per-call state lives on tenacity's call state.

    Args:
        hooks: observers of each decision; ``None`` uses the process-wide hooks
            (:func:`set_on_retry_hooks`; by default a :class:`LoggingHook`).
        budget: a :class:`RetryBudget` shared with other calls.
        rng: randomness for jitter; inject a seeded one for determinism.
        sleep: how to wait (default ``time.sleep``); tests pass a recorder.
            Skipped entirely while :func:`retry_testing` is on.
        monotonic: the clock for the deadline (default ``time.monotonic``).
        clock: the wall clock, to read an HTTP-date ``Retry-After`` (default system).
        name: the name events carry (default: the wrapped function's).
    """
    real: Callable[[float], None] = time.sleep if sleep is None else sleep
    return Retrying(
        sleep=_sync_sleep(real),
        **_parts(policy, hooks, budget, rng, monotonic, clock, name),
    )


def async_retrying(
    policy: RetryPolicy,
    *,
    hooks: Iterable[RetryHook] | None = None,
    budget: RetryBudget | None = None,
    rng: random.Random | None = None,
    sleep: Callable[[float], Any] | None = None,
    monotonic: Callable[[], float] | None = None,
    clock: Clock | None = None,
    name: str | None = None,
) -> AsyncRetrying:
    """A tenacity ``AsyncRetrying`` that follows ``policy`` (arguments as :func:`retrying`).

    ``await policy.async_retrying()(coro_fn, *args)``, or
    ``async for attempt in policy.async_retrying(): with attempt: ...``.
    The default ``sleep`` is ``anyio.sleep``, so it runs under asyncio and trio;
    ``sleep`` may be a coroutine function or a plain one.
    """
    real: Callable[[float], Any] = anyio.sleep if sleep is None else sleep
    return AsyncRetrying(
        sleep=_async_sleep(real),
        **_parts(policy, hooks, budget, rng, monotonic, clock, name),
    )
