"""Ledger settings: the daily cap and where a day begins."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, timezone, tzinfo

from chatsvg_core._clock import utc

__all__ = ["DayBoundary", "LedgerPolicy"]

_LAST_WINDOW: dict[tzinfo, tuple[datetime, datetime]] = {}
"""The last day window computed per fixed offset (``DayBoundary.window``)."""


@dataclass(frozen=True, slots=True)
class DayBoundary:
    """Where a "day" of the daily cap starts and ends: local midnight in ``tz``.

    ``tz`` is any ``tzinfo``: ``datetime.UTC`` (the default), a fixed offset
    (``timezone(timedelta(hours=5, minutes=30))``) or a ``zoneinfo.ZoneInfo``,
    whose days are 23 or 25 hours long across a DST change.

    >>> from datetime import datetime, UTC
    >>> start, end = DayBoundary().window(datetime(2026, 5, 4, 15, 30, tzinfo=UTC))
    >>> start.isoformat(), end.isoformat()
    ('2026-05-04T00:00:00+00:00', '2026-05-05T00:00:00+00:00')
    """

    tz: tzinfo = UTC

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """The UTC ``[start, end)`` of the day that contains ``now``."""
        if now.tzinfo is not UTC:  # utc() only where it has work: a call less per charge
            now = utc(now)
        fixed = type(self.tz) is timezone
        if fixed:
            # A fixed offset's days are 24 hours between midnights that exist:
            # every ``now`` inside the last window computed has that window.
            # (Charges mostly fall on one day; the computation below is a tenth
            # of a charge's Python.)
            last = _LAST_WINDOW.get(self.tz)
            if last is not None and last[0] <= now < last[1]:
                return last
        found = self._window(now)
        if fixed:
            _LAST_WINDOW[self.tz] = found
        return found

    def _window(self, now: datetime) -> tuple[datetime, datetime]:
        local = now.astimezone(self.tz)
        start = datetime.combine(local.date(), time(0), tzinfo=self.tz).astimezone(UTC)
        nxt = local.date() + timedelta(days=1)
        end = datetime.combine(nxt, time(0), tzinfo=self.tz).astimezone(UTC)
        # A zone whose clocks jump over midnight would put "midnight" after
        # now; the day then starts at now's own date boundary in UTC terms.
        start = min(start, now)
        return start, max(end, now + timedelta(microseconds=1))


@dataclass(frozen=True, slots=True)
class LedgerPolicy:
    """How :class:`~chatsvg_core.ledger.Ledger` checks charges and reservations.

    Attributes:
        daily_cap: the most an owner may spend per day (net of refunds and
            releases, counted on the day of the charge), or ``None`` for no cap.
            A call may override it per owner.
        day: where days begin (:class:`DayBoundary`, UTC midnight by default).
    """

    daily_cap: int | None = None
    day: DayBoundary = field(default_factory=DayBoundary)

    def __post_init__(self) -> None:
        if self.daily_cap is not None and (
            isinstance(self.daily_cap, bool) or not isinstance(self.daily_cap, int)
        ):
            raise TypeError("daily_cap is an int or None")
        if self.daily_cap is not None and self.daily_cap < 0:
            raise ValueError("daily_cap is never negative")
