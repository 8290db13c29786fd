"""Observability and the testing switch.

Every retry decision can be observed: a hook gets a :class:`RetryEvent`, and
the default hook logs it through the standard library with structured
``extra`` fields, as stamina does. The testing switch turns every wait off
process-wide, so a host's test suite runs its retry paths without sleeping.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from chatsvg_core._logctx import job_fields
from chatsvg_core.retry._decision import Decision, GiveUpReason, Retry

if TYPE_CHECKING:
    from chatsvg_core.retry._classify import Classification

__all__ = [
    "LoggingHook",
    "RetryEvent",
    "RetryHook",
    "TestingMode",
    "emit",
    "get_on_retry_hooks",
    "get_testing",
    "retry_testing",
    "set_on_retry_hooks",
    "set_testing",
]

logger = logging.getLogger("chatsvg_core.retry")


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """One retry decision, as hooks and logs see it.

    Attributes:
        name: what was being retried (a function's name, a job id...), if known.
        attempt: the number of the attempt that just failed (1 for the first).
        elapsed: seconds since the first attempt started.
        decision: the :class:`Retry` or :class:`GiveUp` that was decided.
        error_type: the error's dotted class name.
        error_code: the library's code or ``"http_<status>"``, if any.
        status: the HTTP status the error carried, if any.
        transient: whether the error was classified transient.
        rule: the classification rule that decided (see :class:`Classification`).
    """

    name: str | None
    attempt: int
    elapsed: float
    decision: Decision
    error_type: str
    error_code: str | None
    status: int | None
    transient: bool
    rule: str

    @property
    def will_retry(self) -> bool:
        """``True`` for a scheduled retry, ``False`` for giving up."""
        return self.decision.will_retry

    @property
    def delay(self) -> float | None:
        """The wait before the next attempt, or ``None`` when giving up."""
        return self.decision.delay if isinstance(self.decision, Retry) else None

    @property
    def reason(self) -> GiveUpReason | None:
        """Why the policy gave up, or ``None`` for a retry."""
        return None if isinstance(self.decision, Retry) else self.decision.reason


@runtime_checkable
class RetryHook(Protocol):
    """What a host implements to observe retry decisions (metrics, tracing, logs).

    ``on_retry`` is called once per decision, for scheduled retries *and* for
    giving up (``event.will_retry`` tells which). It runs on the caller's
    thread or task, so it must be quick and must not block.
    """

    def on_retry(self, event: RetryEvent) -> None:
        """Observe one decision."""
        ...


class LoggingHook:
    """Logs every decision on the ``chatsvg_core.retry`` logger.

    Scheduled retries and give-ups after transient errors log at
    ``retry_level`` (WARNING by default: a retry is a fault that was hidden
    from the caller, and operators should see it); give-ups on permanent errors
    log at DEBUG, since they are the caller's to report. Every record carries
    structured fields in ``extra``: ``retry_name``, ``retry_attempt``,
    ``retry_delay``, ``retry_elapsed``, ``retry_will_retry``, ``retry_reason``,
    ``retry_error_type``, ``retry_error_code``, ``retry_status``,
    ``retry_transient``, ``retry_rule``; ``chatsvg_event`` (``retry_scheduled``
    or ``retry_gave_up``); and inside an engine attempt ``job_id``, ``owner``
    and ``attempt``. The message is a sentence.
    """

    __slots__ = ("_level",)

    def __init__(self, retry_level: int = logging.WARNING) -> None:
        self._level = retry_level

    def on_retry(self, event: RetryEvent) -> None:
        """Log ``event`` with structured fields."""
        level = self._level if event.transient else logging.DEBUG
        if not logger.isEnabledFor(level):
            return
        delay = event.delay
        reason = event.reason
        what = event.name or "a call"
        error = event.error_code or event.error_type
        if event.will_retry:
            message = (
                f"Retrying {what} after attempt {event.attempt} failed with {error}; "
                f"next try in {delay or 0:.2f} s."
            )
        else:
            message = f"Gave up on {what} after attempt {event.attempt} ({reason}): {error}."
        logger.log(
            level,
            message,
            extra={
                # The job being worked on, when the engine set it (job_id, owner, attempt).
                **job_fields(),
                "chatsvg_event": "retry_scheduled" if event.will_retry else "retry_gave_up",
                "retry_name": event.name,
                "retry_attempt": event.attempt,
                "retry_delay": None if delay is None else round(delay, 3),
                "retry_elapsed": round(event.elapsed, 3),
                "retry_will_retry": event.will_retry,
                "retry_reason": None if reason is None else str(reason),
                "retry_error_type": event.error_type,
                "retry_error_code": event.error_code,
                "retry_status": event.status,
                "retry_transient": event.transient,
                "retry_rule": event.rule,
            },
        )

    def __repr__(self) -> str:
        return f"LoggingHook(retry_level={logging.getLevelName(self._level)})"


@dataclass(frozen=True, slots=True)
class TestingMode:
    """The testing switch's state: waits are off; ``attempts`` caps attempts if set."""

    __test__ = False  # not a pytest test class, despite the name

    attempts: int | None = None


class _Config:
    # Process-wide rather than a ContextVar: the sync facade runs the async
    # core on another thread, which would not see a context-local switch.
    __slots__ = ("hooks", "lock", "testing")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hooks: tuple[RetryHook, ...] = (LoggingHook(),)
        self.testing: TestingMode | None = None


_CONFIG = _Config()


def get_on_retry_hooks() -> tuple[RetryHook, ...]:
    """The process-wide hooks used when a call passes none (default: a :class:`LoggingHook`)."""
    return _CONFIG.hooks


def set_on_retry_hooks(hooks: Iterable[RetryHook] | None) -> None:
    """Replace the process-wide hooks; ``None`` restores the default logging hook.

    Pass ``()`` to silence retry observation entirely.
    """
    new = (LoggingHook(),) if hooks is None else tuple(hooks)
    for hook in new:
        if not isinstance(hook, RetryHook):
            raise TypeError(f"{hook!r} has no on_retry(event) method")
    with _CONFIG.lock:
        _CONFIG.hooks = new


def emit(event: RetryEvent, hooks: Iterable[RetryHook]) -> None:
    """Hand ``event`` to each hook in turn.

    A hook that raises is logged (with its traceback) and the others still
    run: a broken metrics exporter must not turn a recoverable provider fault
    into a failed job.
    """
    for hook in hooks:
        try:
            hook.on_retry(event)
        except Exception:
            logger.exception(
                "The retry hook %r raised; the decision stands.",
                hook,
                extra={**job_fields(), "chatsvg_event": "retry_hook_failed"},
            )


def emit_decision(
    hooks: Iterable[RetryHook],
    *,
    name: str | None,
    attempt: int,
    elapsed: float,
    decision: Decision,
    verdict: Classification,
) -> None:
    """Build the :class:`RetryEvent` for one decision and :func:`emit` it."""
    emit(
        RetryEvent(
            name=name,
            attempt=attempt,
            elapsed=elapsed,
            decision=decision,
            error_type=verdict.error_type,
            error_code=verdict.code,
            status=verdict.status,
            transient=verdict.transient,
            rule=verdict.rule,
        ),
        hooks,
    )


def get_testing() -> TestingMode | None:
    """The testing switch's state, or ``None`` when off."""
    return _CONFIG.testing


def set_testing(enabled: bool, *, attempts: int | None = None) -> None:
    """Turn the testing switch on or off for the whole process.

    While on: every delay that :meth:`RetryPolicy.decide
    <chatsvg_core.retry.RetryPolicy.decide>` returns is ``0``, the tenacity
    bridge never sleeps, and when ``attempts`` is given no call makes more
    than that many attempts. :meth:`RetryPolicy.delay
    <chatsvg_core.retry.RetryPolicy.delay>` itself stays pure and unchanged.
    Prefer the :func:`retry_testing` context manager in tests.
    """
    if attempts is not None and attempts < 1:
        raise ValueError("attempts must be at least 1")
    with _CONFIG.lock:
        _CONFIG.testing = TestingMode(attempts) if enabled else None


@contextmanager
def retry_testing(*, attempts: int | None = None) -> Iterator[TestingMode]:
    """Within the block, retries happen without waiting (see :func:`set_testing`).

    The previous state is restored on exit, so blocks nest.

    Examples:
        >>> from chatsvg_core.retry import RetryPolicy
        >>> with retry_testing():
        ...     RetryPolicy().decide(TimeoutError(), 1, 0.0).delay
        0.0
    """
    if attempts is not None and attempts < 1:
        raise ValueError("attempts must be at least 1")
    with _CONFIG.lock:
        previous = _CONFIG.testing
        mode = TestingMode(attempts)
        _CONFIG.testing = mode
    try:
        yield mode
    finally:
        with _CONFIG.lock:
            _CONFIG.testing = previous
