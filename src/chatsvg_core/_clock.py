"""Injected time: the library never reads the wall clock inside pure code."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "utc"]


@runtime_checkable
class Clock(Protocol):
    """Anything with a ``now()`` that returns an aware UTC ``datetime``."""

    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The real clock (``datetime.now(UTC)``)."""

    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


def utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime; naive values are refused.

    Raises:
        ValueError: for a naive datetime, whose meaning would depend on the host.
    """
    if value.tzinfo is UTC:
        return value  # what astimezone(UTC) returns for it; this runs ~20 times per job
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: pass a timezone-aware value (UTC)")
    return value.astimezone(UTC)
