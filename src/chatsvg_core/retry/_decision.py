"""The outcome of one retry decision: wait and retry, or give up (and why)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, TypeAlias

__all__ = ["Decision", "GiveUp", "GiveUpReason", "Retry"]


class GiveUpReason(StrEnum):
    """Why a policy stopped retrying."""

    PERMANENT = "permanent"
    """The error is permanent: trying again cannot help."""
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    """The failed attempt was the last one ``max_attempts`` allows."""
    DEADLINE = "deadline"
    """The overall deadline has passed, or the next attempt would start after it."""
    BUDGET_EXHAUSTED = "budget_exhausted"
    """The shared :class:`RetryBudget` is below half: too many calls are failing."""


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again after ``delay`` seconds."""

    delay: float

    @property
    def will_retry(self) -> Literal[True]:
        """Always ``True``."""
        return True


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop: the last error is final."""

    reason: GiveUpReason

    @property
    def will_retry(self) -> Literal[False]:
        """Always ``False``."""
        return False


Decision: TypeAlias = Retry | GiveUp
"""What :meth:`RetryPolicy.decide <chatsvg_core.retry.RetryPolicy.decide>` returns."""
