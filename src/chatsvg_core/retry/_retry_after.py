"""``Retry-After`` parsing (RFC 9110 §10.2.3): delta-seconds and HTTP-date forms.

Pure: the current time is a parameter, never read from the wall clock.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

__all__ = ["MAX_RETRY_AFTER_HEADER", "parse_retry_after"]

#: Longer header values are refused unread: an IMF-fixdate is 29 characters and
#: any sensible delta-seconds far fewer, so this bounds the work a hostile
#: server can cause without refusing any real value.
MAX_RETRY_AFTER_HEADER = 64

# RFC 9110 allows only 1*DIGIT; a decimal fraction is accepted too because
# several rate limiters send one ("1.5") and refusing it would lose the hint.
_DELTA = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,9})?")


def _as_utc(value: datetime) -> datetime:
    # RFC 9110 says every HTTP-date is GMT; the asctime form parses naive.
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _parse_date(text: str) -> datetime | None:
    try:
        return _as_utc(parsedate_to_datetime(text))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def parse_retry_after(
    value: str | httpx.Response | httpx.Headers | None,
    *,
    now: datetime | None = None,
    cap: float | None = None,
) -> float | None:
    """Seconds to wait according to a ``Retry-After`` value, or ``None``.

    ``value`` is the header's text, or an :class:`httpx.Response` /
    :class:`httpx.Headers` whose ``Retry-After`` header is read. Both forms
    of the header are understood:

    * delta-seconds (``"120"``; a decimal fraction such as ``"1.5"`` is
      accepted too);
    * an HTTP-date (``"Wed, 21 Oct 2015 07:28:00 GMT"``, and the obsolete
      RFC 850 and asctime forms). The wait is the date minus ``now``, never
      negative. For a response that carries a valid ``Date`` header, that
      header is "now" (ahead of the ``now`` argument), because both dates come
      from the server's clock and so clock skew between hosts cancels out.

    A date with no ``now`` to compare against, an empty, malformed or overlong
    (more than :data:`MAX_RETRY_AFTER_HEADER` characters) value gives
    ``None``: the caller falls back to its own backoff. ``cap``, when given,
    bounds the result from above.

    Examples:
        >>> parse_retry_after("120")
        120.0
        >>> from datetime import datetime, UTC
        >>> parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT",
        ...                   now=datetime(2015, 10, 21, 7, 28, tzinfo=UTC))
        30.0
    """
    if value is None:
        return None
    header: str | None
    if isinstance(value, httpx.Response):
        header = value.headers.get("retry-after")
        date = value.headers.get("date")
        if date is not None and len(date) <= MAX_RETRY_AFTER_HEADER:
            now = _parse_date(date) or now
    elif isinstance(value, httpx.Headers):
        header = value.get("retry-after")
    else:
        header = value
    if header is None:
        return None
    text = header.strip()
    if not text or len(text) > MAX_RETRY_AFTER_HEADER:
        return None
    seconds: float | None
    if _DELTA.fullmatch(text):
        seconds = float(text)
    else:
        when = _parse_date(text)
        if when is None or now is None:
            return None
        try:
            seconds = max(0.0, (when - _as_utc(now)).total_seconds())
        except (OverflowError, ValueError):
            return None
    if not math.isfinite(seconds):
        return None
    if cap is not None:
        seconds = min(seconds, cap)
    return seconds
