"""A clock that tests move by hand."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from chatsvg_core._clock import utc

__all__ = ["FakeClock"]

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    """A thread-safe clock that only moves when told to.

    >>> clock = FakeClock()
    >>> start = clock.now()
    >>> clock.advance(5)
    >>> (clock.now() - start).total_seconds()
    5.0
    """

    def __init__(self, start: datetime = _EPOCH) -> None:
        self._now = utc(start)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The clock's current time."""
        with self._lock:
            return self._now

    def advance(self, seconds: float | timedelta) -> None:
        """Move the clock forward (never backward)."""
        step = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        if step < timedelta(0):
            raise ValueError("a FakeClock never moves backward")
        with self._lock:
            self._now += step

    def set(self, when: datetime) -> None:
        """Jump to ``when``, which must not be earlier than now."""
        when = utc(when)
        with self._lock:
            if when < self._now:
                raise ValueError("a FakeClock never moves backward")
            self._now = when

    def __repr__(self) -> str:
        return f"FakeClock({self._now.isoformat()})"
