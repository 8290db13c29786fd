"""Submit rate limits per owner and per any key the host gives, on the `limits` library."""

from __future__ import annotations

import math
import time
from typing import Any

from chatsvg_core.errors import ConfigurationError, RateLimited

try:
    import limits
    from limits.aio.storage import MemoryStorage, Storage
    from limits.aio.strategies import FixedWindowRateLimiter
    from limits.storage import storage_from_string
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ConfigurationError(
        "rate limits need the 'ratelimit' extra: pip install 'chatsvg-core[ratelimit]'",
        extra="ratelimit",
        missing=exc.name,
    ) from exc

__all__ = ["SubmitRateLimit"]


def _parse(spec: str | None, what: str) -> limits.RateLimitItem | None:
    if spec is None:
        return None
    try:
        return limits.parse(spec)
    except ValueError as exc:
        raise ConfigurationError(
            f"bad {what} rate limit {spec!r}: write it like '10/minute' or '100 per hour'",
            option=what,
        ) from exc


class SubmitRateLimit:
    """How often one owner (and one host-given key, e.g. a client IP) may submit.

    Fixed windows counted by the `limits` library in any of its async
    storages (memory, Redis, Memcached, MongoDB) or in chatsvg-core's own
    SQLite or PostgreSQL database (:meth:`in_store`). A refused submit
    raises :class:`~chatsvg_core.errors.RateLimited` (429) with
    ``retry_after`` seconds, before anything is written.

    >>> import asyncio
    >>> limit = SubmitRateLimit(per_owner="2/minute")
    >>> async def three() -> str:
    ...     await limit.check("ann")
    ...     await limit.check("ann")
    ...     try:
    ...         await limit.check("ann")
    ...     except RateLimited as exc:
    ...         return exc.code
    ...     return "admitted"
    >>> asyncio.run(three())
    'rate_limited'

    Args:
        storage: a ``limits.aio.storage.Storage``; default: in this process's memory.
        per_owner: e.g. ``"10/minute"``; ``None`` for no owner limit.
        per_key: the limit for the ``rate_key`` a host passes to ``submit``
            (an IP address, an API key); ``None`` for none.
        namespace: prefixes every counter (several services on one Redis).
    """

    def __init__(
        self,
        storage: Storage | None = None,
        *,
        per_owner: str | None = "60/minute",
        per_key: str | None = None,
        namespace: str = "chatsvg",
    ) -> None:
        self.storage = storage if storage is not None else MemoryStorage()
        self.per_owner = _parse(per_owner, "per_owner")
        self.per_key = _parse(per_key, "per_key")
        self.namespace = namespace
        self._limiter = FixedWindowRateLimiter(self.storage)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SubmitRateLimit:
        """Counters in a `limits` storage named by URL: ``memory://``, ``redis://host/0``..."""
        if "://" not in url:
            raise ConfigurationError("a rate-limit storage URL looks like redis://host:6379/0")
        scheme = url.split("://", 1)[0]
        uri = url if scheme.startswith("async+") else f"async+{url}"
        # redis-py's asyncio client (the `ratelimit` extra), not limits' default coredis.
        client = {"implementation": "redispy"} if "redis" in scheme else {}
        try:
            storage = storage_from_string(uri, **client)
        except Exception as exc:  # limits raises ConfigurationError/ImportError of its own
            raise ConfigurationError(
                f"no rate-limit storage for {scheme}:// ({exc})", scheme=scheme
            ) from exc
        assert isinstance(storage, Storage)
        return cls(storage, **options)

    @classmethod
    def in_store(cls, store: Any, **options: Any) -> SubmitRateLimit:
        """Counters in chatsvg-core's own SQLite or PostgreSQL store (no Redis needed)."""
        from chatsvg_core.ratelimit._sql import SQLRateStorage

        return cls(SQLRateStorage(store), **options)

    async def check(self, owner: str, key: str | None = None) -> None:
        """Count one submit for ``key`` (if given) and ``owner``; raise ``RateLimited`` if over."""
        checks = []
        if key is not None and self.per_key is not None:
            checks.append(("key", self.per_key, key))
        if self.per_owner is not None:
            checks.append(("owner", self.per_owner, owner))
        for scope, item, who in checks:
            if await self._limiter.hit(item, self.namespace, scope, who):
                continue
            stats = await self._limiter.get_window_stats(item, self.namespace, scope, who)
            retry_after = max(1, math.ceil(stats.reset_time - time.time()))
            raise RateLimited(
                f"too many submits for this {scope}: the limit is {item}",
                scope=scope,
                limit=str(item),
                retry_after=retry_after,
            )
