"""``RetryPolicy``: one declarative, serialisable definition of how to retry."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from chatsvg_core._clock import Clock
from chatsvg_core.retry._budget import RetryBudget
from chatsvg_core.retry._classify import Classification, ErrorClass, classify
from chatsvg_core.retry._decision import Decision, GiveUp, GiveUpReason, Retry
from chatsvg_core.retry._hooks import RetryHook, emit_decision, get_testing

if TYPE_CHECKING:
    from tenacity import AsyncRetrying, Retrying

__all__ = ["DECORRELATED_FACTOR", "Jitter", "RetryPolicy"]

#: Decorrelated jitter draws the next delay from ``[initial_delay, 3 * previous]``,
#: the factor used in the AWS "Exponential Backoff and Jitter" study.
DECORRELATED_FACTOR = 3.0

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")

# One shared generator for callers that inject none; it is never reseeded by us.
_DEFAULT_RNG = random.Random()


class Jitter(StrEnum):
    """How randomness is mixed into the exponential backoff (AWS study's names).

    With ``bound(n) = min(max_delay, initial_delay * multiplier ** (n - 1))``:
    """

    NONE = "none"
    """``bound(n)``: no randomness. Clients that failed together retry together."""
    FULL = "full"
    """``uniform(0, bound(n))``: the study's recommendation; least total work."""
    EQUAL = "equal"
    """``bound(n) / 2 + uniform(0, bound(n) / 2)``: never retries almost at once."""
    DECORRELATED = "decorrelated"
    """``min(max_delay, uniform(initial_delay, 3 * previous))``: grows from the last delay."""


def _check_statuses(value: Mapping[int, ErrorClass]) -> Mapping[int, ErrorClass]:
    for status in value:
        if not 100 <= status <= 599:
            raise ValueError(f"status override {status} is not an HTTP status (100-599)")
    return MappingProxyType(dict(value))


def _check_types(value: Mapping[str, ErrorClass]) -> Mapping[str, ErrorClass]:
    for name in value:
        if len(name) > 200 or not _DOTTED.fullmatch(name):
            raise ValueError(f"type override {name[:50]!r} is not a dotted class name")
    return MappingProxyType(dict(value))


def _plain(value: Mapping[Any, ErrorClass]) -> dict[Any, str]:
    return {k: str(v) for k, v in value.items()}


StatusOverrides = Annotated[
    Mapping[int, ErrorClass],
    AfterValidator(_check_statuses),
    PlainSerializer(_plain, return_type=dict[int, str]),
]
TypeOverrides = Annotated[
    Mapping[str, ErrorClass],
    AfterValidator(_check_types),
    PlainSerializer(_plain, return_type=dict[str, str]),
]


class RetryPolicy(BaseModel):
    """How to retry: backoff, jitter, limits, ``Retry-After`` and classification rules.

    Pure data: frozen, and serialisable to and from JSON or a dict, so a host
    keeps it in its settings (``RetryPolicy.model_validate_json(text)``,
    ``policy.model_dump(mode="json")``). The one exception is ``classifier``,
    a Python callable: it is excluded from serialisation and must be set in
    code after loading (``policy.model_copy(update={"classifier": fn})``).

    The defaults suit calls to a model provider that take seconds each: five
    attempts, backoff from 0.5 s doubling to at most 30 s with full jitter, all
    within two minutes, honouring the provider's ``Retry-After`` up to a minute.

    Examples:
        >>> policy = RetryPolicy(max_attempts=3, jitter="none", initial_delay=1)
        >>> [policy.delay(n) for n in (1, 2, 3)]
        [1.0, 2.0, 4.0]
        >>> RetryPolicy.model_validate_json(policy.model_dump_json()) == policy
        True
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    max_attempts: int = Field(default=5, ge=1, le=100)
    """Attempts in all, the first included (1 means never retry)."""
    initial_delay: float = Field(default=0.5, ge=0, le=3600)
    """Backoff bound before the second attempt, in seconds."""
    multiplier: float = Field(default=2.0, ge=1, le=10)
    """Growth of the bound per attempt (1 gives a constant bound)."""
    max_delay: float = Field(default=30.0, ge=0, le=86400)
    """Largest computed backoff, in seconds (``Retry-After`` has its own cap)."""
    jitter: Jitter = Jitter.FULL
    """How randomness is mixed in; see :class:`Jitter`."""
    deadline: float | None = Field(default=120.0, gt=0, le=7 * 86400)
    """Overall seconds from the first attempt; no retry starts after it. ``None``: none."""
    honour_retry_after: bool = True
    """Wait what the server's ``Retry-After`` says instead of the computed backoff."""
    retry_after_cap: float = Field(default=60.0, ge=0, le=86400)
    """Longest ``Retry-After`` wait honoured, in seconds; longer hints are cut to it."""
    status_overrides: StatusOverrides = Field(default_factory=dict, validate_default=True)
    """HTTP status → ``"transient"``/``"permanent"``, over the default table."""
    type_overrides: TypeOverrides = Field(default_factory=dict, validate_default=True)
    """Dotted exception class name (``"httpx.ReadTimeout"``) → verdict; bases match too."""
    # Skipped from the JSON schema as well as from dumps: a settings schema
    # should only describe what can be written in settings.
    classifier: SkipJsonSchema[Callable[[BaseException], bool | None] | None] = Field(
        default=None, exclude=True, repr=False
    )
    """Code-only hook consulted first: ``True``/``False``, or ``None`` for no opinion."""

    @model_validator(mode="after")
    def _delays_consistent(self) -> RetryPolicy:
        if self.initial_delay > self.max_delay:
            raise ValueError("initial_delay must not exceed max_delay")
        return self

    def __hash__(self) -> int:
        # pydantic's frozen hash would hash the override mappings, which are
        # read-only views and unhashable; equal policies still hash equal.
        return hash(
            (
                self.max_attempts,
                self.initial_delay,
                self.multiplier,
                self.max_delay,
                self.jitter,
                self.deadline,
                self.honour_retry_after,
                self.retry_after_cap,
                frozenset(self.status_overrides.items()),
                frozenset(self.type_overrides.items()),
                self.classifier,
            )
        )

    # --- pure parts -----------------------------------------------------

    def backoff_bound(self, attempt: int) -> float:
        """The un-jittered delay after failed attempt ``attempt`` (1-based).

        ``min(max_delay, initial_delay * multiplier ** (attempt - 1))``:
        non-decreasing in ``attempt``, and the upper bound of full and equal jitter.
        """
        if attempt < 1:
            raise ValueError("attempt numbers start at 1")
        if self.initial_delay == 0:
            return 0.0
        try:
            raw = self.initial_delay * self.multiplier ** (attempt - 1)
        except OverflowError:
            return self.max_delay
        return min(self.max_delay, raw)

    def delay(
        self,
        attempt: int,
        *,
        rng: random.Random | None = None,
        retry_after: float | None = None,
        previous: float | None = None,
    ) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next.

        Pure: the same arguments and an equally seeded ``rng`` give the same
        result. ``rng`` defaults to a module-level generator.

        * When ``honour_retry_after`` is set and ``retry_after`` is given, the
          server's hint wins, without jitter: ``min(retry_after, retry_after_cap)``.
        * Otherwise the jittered exponential backoff, within ``[0, max_delay]``.

        ``previous`` is the delay used after the previous attempt; only
        decorrelated jitter needs it. When it is not known (a job re-enqueued
        by a stateless engine), the previous attempt's un-jittered bound stands
        in for it, so the delays still grow.
        """
        if attempt < 1:
            raise ValueError("attempt numbers start at 1")
        if self.honour_retry_after and retry_after is not None and not math.isnan(retry_after):
            return min(max(retry_after, 0.0), self.retry_after_cap)
        bound = self.backoff_bound(attempt)
        # ``==`` rather than ``is``: ``model_copy(update=...)`` skips validation
        # and may leave a plain string here.
        jitter = self.jitter
        if jitter == Jitter.NONE:
            return bound
        rand = _DEFAULT_RNG if rng is None else rng
        if jitter == Jitter.FULL:
            return min(bound, rand.uniform(0.0, bound))
        if jitter == Jitter.EQUAL:
            half = bound / 2
            return min(bound, max(half, half + rand.uniform(0.0, half)))
        # Decorrelated: the AWS formula, seeded from the last delay.
        low = self.initial_delay
        if previous is None or math.isnan(previous):
            prev = low if attempt == 1 else self.backoff_bound(attempt - 1)
        else:
            prev = max(previous, 0.0)
        high = min(self.max_delay, max(low, prev * DECORRELATED_FACTOR))
        return min(high, max(low, rand.uniform(low, high)))

    def classify(self, error: BaseException, *, now: datetime | None = None) -> Classification:
        """Classify ``error`` by this policy's rules (see :func:`classify`)."""
        return classify(
            error,
            status_overrides=self.status_overrides,
            type_overrides=self.type_overrides,
            classifier=self.classifier,
            now=now,
        )

    # --- the decision ---------------------------------------------------

    def decide(
        self,
        error: BaseException,
        attempt: int,
        elapsed: float,
        *,
        rng: random.Random | None = None,
        previous: float | None = None,
        budget: RetryBudget | None = None,
        now: datetime | None = None,
        hooks: Iterable[RetryHook] = (),
        name: str | None = None,
    ) -> Decision:
        """Retry after a delay, or give up: the one decision used everywhere.

        Args:
            error: what failed attempt ``attempt`` raised.
            attempt: the number of the attempt that failed (1 for the first).
            elapsed: seconds from the start of the first attempt until now.
            rng: randomness for jitter (inject a seeded one for determinism).
            previous: the previous delay, for decorrelated jitter.
            budget: a shared :class:`RetryBudget`; a transient failure spends
                from it, and when it says no the answer is
                ``GiveUp(BUDGET_EXHAUSTED)``.
            now: the current time, to read an HTTP-date ``Retry-After``.
            hooks: observers told about the decision (none by default, which
                keeps ``decide`` free of side effects apart from ``budget``).
            name: what is being retried, for the hooks.

        The checks, in order: a permanent error gives up (``PERMANENT``);
        the last allowed attempt gives up (``ATTEMPTS_EXHAUSTED``); a deadline
        that has passed, or that the next attempt would start after, gives up
        (``DEADLINE``); an exhausted budget gives up (``BUDGET_EXHAUSTED``);
        otherwise ``Retry(delay)`` with :meth:`delay`, honouring the error's
        ``Retry-After``. Under :func:`retry_testing` the delay is 0.
        """
        decision, _ = self._decide(
            error,
            attempt,
            elapsed,
            rng=rng,
            previous=previous,
            budget=budget,
            now=now,
            hooks=hooks,
            name=name,
        )
        return decision

    def _decide(
        self,
        error: BaseException,
        attempt: int,
        elapsed: float,
        *,
        rng: random.Random | None,
        previous: float | None,
        budget: RetryBudget | None,
        now: datetime | None,
        hooks: Iterable[RetryHook],
        name: str | None,
    ) -> tuple[Decision, Classification]:
        if attempt < 1:
            raise ValueError("attempt numbers start at 1")
        if not elapsed >= 0:  # also refuses NaN
            raise ValueError("elapsed must be a non-negative number of seconds")
        verdict = self.classify(error, now=now)
        decision = self._verdict_to_decision(
            verdict, attempt, elapsed, rng=rng, previous=previous, budget=budget
        )
        if hooks:
            emit_decision(
                hooks,
                name=name,
                attempt=attempt,
                elapsed=elapsed,
                decision=decision,
                verdict=verdict,
            )
        return decision, verdict

    def _verdict_to_decision(
        self,
        verdict: Classification,
        attempt: int,
        elapsed: float,
        *,
        rng: random.Random | None,
        previous: float | None,
        budget: RetryBudget | None,
    ) -> Decision:
        if verdict.kind is ErrorClass.PERMANENT:
            return GiveUp(GiveUpReason.PERMANENT)
        testing = get_testing()
        max_attempts = self.max_attempts
        if testing is not None and testing.attempts is not None:
            max_attempts = min(max_attempts, testing.attempts)
        # The failure is recorded before the other checks: an attempt that
        # ends the call still tells the budget the provider is failing.
        allowed_by_budget = True if budget is None else budget.fail_and_check()
        if attempt >= max_attempts:
            return GiveUp(GiveUpReason.ATTEMPTS_EXHAUSTED)
        deadline = self.deadline
        if deadline is not None and elapsed >= deadline:
            return GiveUp(GiveUpReason.DEADLINE)
        if testing is not None:
            wait = 0.0
        else:
            retry_after = verdict.retry_after if self.honour_retry_after else None
            wait = self.delay(attempt, rng=rng, retry_after=retry_after, previous=previous)
        if deadline is not None and elapsed + wait > deadline:
            return GiveUp(GiveUpReason.DEADLINE)
        if not allowed_by_budget:
            return GiveUp(GiveUpReason.BUDGET_EXHAUSTED)
        return Retry(wait)

    # --- tenacity bridge ------------------------------------------------

    def retrying(
        self,
        *,
        hooks: Iterable[RetryHook] | None = None,
        budget: RetryBudget | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] | None = None,
        monotonic: Callable[[], float] | None = None,
        clock: Clock | None = None,
        name: str | None = None,
    ) -> Retrying:
        """A tenacity ``Retrying`` that follows this policy; see :func:`retrying`."""
        from chatsvg_core.retry._tenacity import retrying

        return retrying(
            self,
            hooks=hooks,
            budget=budget,
            rng=rng,
            sleep=sleep,
            monotonic=monotonic,
            clock=clock,
            name=name,
        )

    def async_retrying(
        self,
        *,
        hooks: Iterable[RetryHook] | None = None,
        budget: RetryBudget | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Any] | None = None,
        monotonic: Callable[[], float] | None = None,
        clock: Clock | None = None,
        name: str | None = None,
    ) -> AsyncRetrying:
        """A tenacity ``AsyncRetrying`` that follows this policy; see :func:`async_retrying`."""
        from chatsvg_core.retry._tenacity import async_retrying

        return async_retrying(
            self,
            hooks=hooks,
            budget=budget,
            rng=rng,
            sleep=sleep,
            monotonic=monotonic,
            clock=clock,
            name=name,
        )
