"""The ledger over a store: each call one transaction, time from an injected clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from types import EllipsisType
from typing import TypeVar

from pydantic import BaseModel, ConfigDict

from chatsvg_core._clock import Clock, SystemClock
from chatsvg_core.ledger import _ops
from chatsvg_core.ledger._errors import InvalidReference
from chatsvg_core.ledger._policy import LedgerPolicy
from chatsvg_core.storage import LedgerEntry, Store, StoreTransaction

__all__ = ["DailyUsage", "Ledger", "Statement"]

T = TypeVar("T")


class Statement(BaseModel):
    """An owner's balance and a page of entries (newest first), read in one transaction."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    owner: str
    balance: int
    entries: tuple[LedgerEntry, ...]

    def _repr_html_(self) -> str:
        from chatsvg_core._display import html_table

        rows = [
            (e.created_at.isoformat(), e.kind.value, f"{e.amount:+d}", e.ref or "", e.memo or "")
            for e in self.entries
        ]
        return html_table(
            ["when", "kind", "amount", "ref", "memo"],
            rows,
            caption=f"{self.owner}: {self.balance} credits",
        )


class DailyUsage(BaseModel):
    """How much of the daily cap an owner has used in the day containing ``at``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    owner: str
    used: int
    cap: int | None
    day_start: datetime
    resets_at: datetime

    @property
    def remaining(self) -> int | None:
        """What may still be spent today (``None`` without a cap)."""
        return None if self.cap is None else max(self.cap - self.used, 0)


class Ledger:
    """Credits over a :class:`~chatsvg_core.storage.Store`; every method is one transaction.

    Use the functions of :mod:`chatsvg_core.ledger` that take a transaction
    (``charge(tx, ...)``) to share a transaction with a job change instead.

    >>> import asyncio
    >>> from chatsvg_core.storage import MemoryStore
    >>> async def demo() -> int:
    ...     ledger = Ledger(MemoryStore())
    ...     await ledger.grant("alice", 10, external_id="payment-1")
    ...     await ledger.charge("alice", 3, ref="job-1")
    ...     await ledger.charge("alice", 3, ref="job-1")  # a repeat: no second charge
    ...     return await ledger.balance("alice")
    >>> asyncio.run(demo())
    7
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        policy: LedgerPolicy | None = None,
        new_id: _ops.IdFactory | None = None,
    ) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.policy = policy or LedgerPolicy()
        self._new_id = new_id or _ops._uuid

    async def _in_tx(self, op: Callable[[StoreTransaction], Awaitable[T]]) -> T:
        async with self.store.transaction() as tx:
            return await op(tx)

    def _cap(self, daily_cap: int | EllipsisType | None) -> int | None:
        return self.policy.daily_cap if isinstance(daily_cap, EllipsisType) else daily_cap

    async def grant(
        self, owner: str, amount: int, *, external_id: str | None = None, memo: str | None = None
    ) -> LedgerEntry:
        """See :func:`chatsvg_core.ledger.grant`."""
        now = self.clock.now()
        return await self._in_tx(
            lambda tx: _ops.grant(
                tx, owner, amount, now=now, external_id=external_id, memo=memo, new_id=self._new_id
            )
        )

    async def charge(
        self,
        owner: str,
        amount: int,
        *,
        ref: str,
        daily_cap: int | EllipsisType | None = ...,
        memo: str | None = None,
    ) -> LedgerEntry:
        """See :func:`chatsvg_core.ledger.charge`; ``daily_cap`` defaults to the policy's."""
        now, cap = self.clock.now(), self._cap(daily_cap)
        return await self._in_tx(
            lambda tx: _ops.charge(
                tx,
                owner,
                amount,
                ref=ref,
                now=now,
                daily_cap=cap,
                day=self.policy.day,
                memo=memo,
                new_id=self._new_id,
            )
        )

    async def refund(self, ref: str, *, memo: str | None = None) -> LedgerEntry:
        """See :func:`chatsvg_core.ledger.refund`."""
        now = self.clock.now()
        return await self._in_tx(
            lambda tx: _ops.refund(tx, ref, now=now, memo=memo, new_id=self._new_id)
        )

    async def reserve(
        self,
        owner: str,
        amount: int,
        *,
        ref: str,
        daily_cap: int | EllipsisType | None = ...,
        memo: str | None = None,
    ) -> LedgerEntry:
        """See :func:`chatsvg_core.ledger.reserve`; ``daily_cap`` defaults to the policy's."""
        now, cap = self.clock.now(), self._cap(daily_cap)
        return await self._in_tx(
            lambda tx: _ops.reserve(
                tx,
                owner,
                amount,
                ref=ref,
                now=now,
                daily_cap=cap,
                day=self.policy.day,
                memo=memo,
                new_id=self._new_id,
            )
        )

    async def capture(self, ref: str, *, memo: str | None = None) -> LedgerEntry:
        """See :func:`chatsvg_core.ledger.capture`."""
        now = self.clock.now()
        return await self._in_tx(
            lambda tx: _ops.capture(tx, ref, now=now, memo=memo, new_id=self._new_id)
        )

    async def release(self, ref: str, *, memo: str | None = None) -> LedgerEntry:
        """See :func:`chatsvg_core.ledger.release`."""
        now = self.clock.now()
        return await self._in_tx(
            lambda tx: _ops.release(tx, ref, now=now, memo=memo, new_id=self._new_id)
        )

    async def adjust(
        self, owner: str, amount: int, *, ref: str | None = None, memo: str | None = None
    ) -> LedgerEntry:
        """See :func:`chatsvg_core.ledger.adjust`."""
        now = self.clock.now()
        return await self._in_tx(
            lambda tx: _ops.adjust(
                tx, owner, amount, now=now, ref=ref, memo=memo, new_id=self._new_id
            )
        )

    async def balance(self, owner: str) -> int:
        """The owner's balance (0 for an owner who never had an account)."""
        return await self._in_tx(lambda tx: _ops.balance(tx, owner))

    async def statement(
        self,
        owner: str,
        *,
        limit: int = 100,
        before: datetime | None = None,
        before_id: str | None = None,
    ) -> Statement:
        """The balance and up to ``limit`` entries, newest first.

        For the next page pass the last entry's ``created_at`` and ``id`` as
        ``before`` and ``before_id`` (entries sharing a timestamp are not lost).
        """

        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidReference(
                "limit is an int from 1 to 10000", what="limit", reason="out_of_range"
            )
        if before is not None:
            before = _ops._check_now(before)
        if before_id is not None:
            _ops._check_ref(before_id, "before_id")

        async def read(tx: StoreTransaction) -> Statement:
            total = await _ops.balance(tx, owner)
            page: Sequence[LedgerEntry] = await tx.entries(
                owner, limit=limit, before=before, before_id=before_id
            )
            return Statement(owner=owner, balance=total, entries=tuple(page))

        return await self._in_tx(read)

    async def usage(
        self,
        owner: str,
        *,
        at: datetime | None = None,
        daily_cap: int | EllipsisType | None = ...,
    ) -> DailyUsage:
        """The owner's net usage in the day containing ``at`` (default: now)."""
        when = _ops._check_now(at) if at is not None else self.clock.now()
        start, end = self.policy.day.window(when)

        async def read(tx: StoreTransaction) -> int:
            await _ops.balance(tx, owner)  # validates the owner
            return await tx.usage(owner, since=start, until=end)

        used = await self._in_tx(read)
        return DailyUsage(
            owner=owner, used=used, cap=self._cap(daily_cap), day_start=start, resets_at=end
        )
