"""A retry budget: a token bucket shared across calls that stops retry storms.

The scheme is gRPC's retry throttling (gRFC A6), which Envoy and Finagle's
budgets resemble: every transient failure costs one token, every success
refunds ``token_ratio`` tokens, and retries are allowed only while more than
half the bucket is left. When most calls fail, the bucket drains below half
within a few failures and every caller stops retrying at once, so a struggling
provider sees the first attempts only, not ``max_attempts`` times the load.
"""

from __future__ import annotations

import threading

__all__ = ["RetryBudget"]

# Tokens are counted in thousandths, as gRPC does, so that the ratio's
# arithmetic is exact and the bucket never drifts from float rounding.
_SCALE = 1000


class RetryBudget:
    """A thread-safe and asyncio-safe token bucket deciding whether retries are allowed.

    Defaults: ``max_tokens=10``, ``token_ratio=0.1``.

    * The bucket starts full. Each transient failure costs 1 token (never
      below 0); each success refunds ``token_ratio`` (never above
      ``max_tokens``).
    * A retry is allowed only while the tokens are strictly more than
      ``max_tokens / 2``.

    Why these numbers: from a full bucket the first four failures in a row are
    still retried and the fifth is not, so an isolated burst is retried while
    an outage is noticed within a handful of calls. In steady state the
    bucket holds its level when ``failures * 1 == successes * token_ratio``,
    so retries keep going while fewer than ``ratio / (1 + ratio)`` of calls
    fail (about 9% with 0.1) and stop above that: past that rate retries
    mostly add load to a provider that is already failing. After an outage
    each success refunds a tenth of a token, so retries resume gradually as
    the provider recovers, not all at once.

    Every method holds a lock for a few arithmetic operations and never
    awaits, so one budget can be shared by threads and asyncio tasks alike.

    Examples:
        >>> budget = RetryBudget(max_tokens=4, token_ratio=0.5)
        >>> budget.record_failure(); budget.allows_retry()
        True
        >>> budget.record_failure(); budget.allows_retry()
        False
        >>> budget.record_success(); budget.record_success(); budget.allows_retry()
        True
    """

    __slots__ = ("_lock", "_max", "_ratio", "_tokens")

    def __init__(self, max_tokens: float = 10, token_ratio: float = 0.1) -> None:
        if not 0 < max_tokens <= 1000:
            raise ValueError("max_tokens must be in (0, 1000]")
        if not 0 < token_ratio <= max_tokens:
            raise ValueError("token_ratio must be in (0, max_tokens]")
        self._max = round(max_tokens * _SCALE)
        self._ratio = round(token_ratio * _SCALE)
        if self._max < 1 or self._ratio < 1:
            raise ValueError("max_tokens and token_ratio have at most 3 decimal places")
        self._tokens = self._max
        self._lock = threading.Lock()

    @property
    def max_tokens(self) -> float:
        """The bucket's size."""
        return self._max / _SCALE

    @property
    def token_ratio(self) -> float:
        """Tokens refunded by one success."""
        return self._ratio / _SCALE

    @property
    def tokens(self) -> float:
        """The tokens left now."""
        with self._lock:
            return self._tokens / _SCALE

    def record_success(self) -> None:
        """A call succeeded: refund ``token_ratio`` tokens (up to ``max_tokens``)."""
        with self._lock:
            self._tokens = min(self._max, self._tokens + self._ratio)

    def record_failure(self) -> None:
        """A call failed transiently: spend one token (down to zero)."""
        with self._lock:
            self._tokens = max(0, self._tokens - _SCALE)

    def allows_retry(self) -> bool:
        """``True`` while more than half the bucket is left."""
        with self._lock:
            return self._tokens * 2 > self._max

    def fail_and_check(self) -> bool:
        """Record a transient failure and say whether it may be retried, atomically.

        This is what :meth:`RetryPolicy.decide
        <chatsvg_core.retry.RetryPolicy.decide>` calls; doing both under one
        lock means two concurrent failures cannot both see the last token.
        """
        with self._lock:
            self._tokens = max(0, self._tokens - _SCALE)
            return self._tokens * 2 > self._max

    def __repr__(self) -> str:
        return (
            f"RetryBudget(tokens={self.tokens:g}, max_tokens={self.max_tokens:g}, "
            f"token_ratio={self.token_ratio:g})"
        )
