"""The ledger for sync code: each call runs :class:`Ledger`'s coroutine on the loop thread."""

from __future__ import annotations

import functools
from datetime import datetime
from types import EllipsisType

from chatsvg_core._clock import Clock
from chatsvg_core._sync import run_sync
from chatsvg_core.ledger._ledger import DailyUsage, Ledger, Statement
from chatsvg_core.ledger._ops import IdFactory
from chatsvg_core.ledger._policy import LedgerPolicy
from chatsvg_core.storage import LedgerEntry, Store, SyncStore

__all__ = ["SyncLedger"]


class SyncLedger:
    """:class:`Ledger` for sync hosts; same arguments, same rules, same errors.

    >>> from chatsvg_core.storage import MemoryStore
    >>> ledger = SyncLedger(MemoryStore())
    >>> ledger.grant("alice", 10).amount
    10
    >>> ledger.charge("alice", 4, ref="job-1").amount
    -4
    >>> ledger.balance("alice")
    6
    """

    def __init__(
        self,
        store: Store | SyncStore,
        *,
        clock: Clock | None = None,
        policy: LedgerPolicy | None = None,
        new_id: IdFactory | None = None,
    ) -> None:
        target = store.store if isinstance(store, SyncStore) else store
        self.ledger = Ledger(target, clock=clock, policy=policy, new_id=new_id)

    def grant(
        self, owner: str, amount: int, *, external_id: str | None = None, memo: str | None = None
    ) -> LedgerEntry:
        """See :meth:`Ledger.grant`."""
        op = functools.partial(self.ledger.grant, owner, amount, external_id=external_id, memo=memo)
        return run_sync(op)

    def charge(
        self,
        owner: str,
        amount: int,
        *,
        ref: str,
        daily_cap: int | EllipsisType | None = ...,
        memo: str | None = None,
    ) -> LedgerEntry:
        """See :meth:`Ledger.charge`."""
        op = functools.partial(
            self.ledger.charge, owner, amount, ref=ref, daily_cap=daily_cap, memo=memo
        )
        return run_sync(op)

    def refund(self, ref: str, *, memo: str | None = None) -> LedgerEntry:
        """See :meth:`Ledger.refund`."""
        return run_sync(functools.partial(self.ledger.refund, ref, memo=memo))

    def reserve(
        self,
        owner: str,
        amount: int,
        *,
        ref: str,
        daily_cap: int | EllipsisType | None = ...,
        memo: str | None = None,
    ) -> LedgerEntry:
        """See :meth:`Ledger.reserve`."""
        op = functools.partial(
            self.ledger.reserve, owner, amount, ref=ref, daily_cap=daily_cap, memo=memo
        )
        return run_sync(op)

    def capture(self, ref: str, *, memo: str | None = None) -> LedgerEntry:
        """See :meth:`Ledger.capture`."""
        return run_sync(functools.partial(self.ledger.capture, ref, memo=memo))

    def release(self, ref: str, *, memo: str | None = None) -> LedgerEntry:
        """See :meth:`Ledger.release`."""
        return run_sync(functools.partial(self.ledger.release, ref, memo=memo))

    def adjust(
        self, owner: str, amount: int, *, ref: str | None = None, memo: str | None = None
    ) -> LedgerEntry:
        """See :meth:`Ledger.adjust`."""
        return run_sync(functools.partial(self.ledger.adjust, owner, amount, ref=ref, memo=memo))

    def balance(self, owner: str) -> int:
        """See :meth:`Ledger.balance`."""
        return run_sync(self.ledger.balance, owner)

    def statement(
        self,
        owner: str,
        *,
        limit: int = 100,
        before: datetime | None = None,
        before_id: str | None = None,
    ) -> Statement:
        """See :meth:`Ledger.statement`."""
        op = functools.partial(
            self.ledger.statement, owner, limit=limit, before=before, before_id=before_id
        )
        return run_sync(op)

    def usage(
        self,
        owner: str,
        *,
        at: datetime | None = None,
        daily_cap: int | EllipsisType | None = ...,
    ) -> DailyUsage:
        """See :meth:`Ledger.usage`."""
        return run_sync(functools.partial(self.ledger.usage, owner, at=at, daily_cap=daily_cap))
