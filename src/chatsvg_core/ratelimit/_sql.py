"""A `limits` storage over chatsvg-core's own SQLite or PostgreSQL database.

The `limits` library keeps counters in memory, Redis, Memcached or MongoDB.
A host that runs on SQLite alone, or on PostgreSQL without Redis, can keep
them in the database it already has: this class implements the storage
interface of ``limits.aio`` (enough for its fixed-window strategy) with one
atomic upsert per hit, in the table of migration 0004.
"""

from __future__ import annotations

import time
from typing import Any

from limits.aio.storage import Storage

from chatsvg_core.errors import ConfigurationError, StorageError
from chatsvg_core.storage import Store

__all__ = ["SQLRateStorage"]

_HIT = (
    "INSERT INTO chatsvg_rate_limits (limit_key, hits, expires_at) VALUES (?, ?, ?) "
    "ON CONFLICT (limit_key) DO UPDATE SET "
    "hits = CASE WHEN chatsvg_rate_limits.expires_at <= ? THEN excluded.hits "
    "ELSE chatsvg_rate_limits.hits + excluded.hits END, "
    "expires_at = CASE WHEN chatsvg_rate_limits.expires_at <= ? THEN excluded.expires_at "
    "ELSE chatsvg_rate_limits.expires_at END "
    "RETURNING hits"
)


class SQLRateStorage(Storage):
    """Fixed-window counters in a :class:`~chatsvg_core.storage.sqlite.SQLiteStore` or
    :class:`~chatsvg_core.storage.postgres.PostgresStore` (one upsert per hit, atomic
    across processes: a row lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite).
    """

    STORAGE_SCHEME = None  # built from a store, never from a URI

    def __init__(self, store: Store) -> None:
        if not hasattr(store, "dialect"):
            raise ConfigurationError(
                "SQLRateStorage needs a SQLite or PostgreSQL store of chatsvg-core",
                store=type(store).__name__,
            )
        super().__init__()
        self.store = store

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return StorageError

    async def _one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        async with self.store.transaction() as tx:
            row: tuple[Any, ...] | None = await tx._one(sql, params)  # type: ignore[attr-defined]
        return row

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        row = await self._one(_HIT, (key, amount, now + expiry, now, now))
        return int(row[0]) if row else 0

    async def get(self, key: str) -> int:
        row = await self._one(
            "SELECT hits FROM chatsvg_rate_limits WHERE limit_key = ? AND expires_at > ?",
            (key, time.time()),
        )
        return int(row[0]) if row else 0

    async def get_expiry(self, key: str) -> float:
        row = await self._one(
            "SELECT expires_at FROM chatsvg_rate_limits WHERE limit_key = ?", (key,)
        )
        return float(row[0]) if row else time.time()

    async def check(self) -> bool:
        try:
            await self._one("SELECT 1", ())
        except StorageError:
            return False
        return True

    async def reset(self) -> int | None:
        async with self.store.transaction() as tx:
            count: int = await tx._exec("DELETE FROM chatsvg_rate_limits")  # type: ignore[attr-defined]
        return count

    async def clear(self, key: str) -> None:
        async with self.store.transaction() as tx:
            await tx._exec(  # type: ignore[attr-defined]
                "DELETE FROM chatsvg_rate_limits WHERE limit_key = ?", (key,)
            )
