"""What a charge or a reservation reads before it writes, as one optional store call.

The ledger's rules (:func:`chatsvg_core.ledger.charge` and ``reserve``) need,
under the owner's account lock: whether the account exists, the entry this
job already has (a replay), whether the job used the other mode, the balance
and, with a daily cap, today's net usage. Over the fine primitives that is up
to five statements; a backend whose transaction offers :class:`SpendReader`
answers with one. The decisions stay in the ledger, written once; this module
only gathers the facts they are made from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from chatsvg_core.storage._protocol import EntryKind, LedgerEntry, StoreTransaction

__all__ = [
    "SpendReader",
    "SpendState",
    "read_spend_state",
    "read_spend_state_reference",
    "spend_state_of",
]


@dataclass(frozen=True, slots=True)
class SpendState:
    """The facts a spend is decided on, read under the owner's account lock."""

    exists: bool
    """Whether the owner has an account (one without is an owner with a balance of 0)."""
    seen: LedgerEntry | None
    """The entry of the spend's kind this reference already has (a replay), if any."""
    other: bool
    """Whether the reference has an entry of the other mode (charge vs reserve)."""
    balance: int
    """The owner's balance."""
    used: int | None
    """Net usage in the cap window (``None`` when no window was asked for)."""


# SpendState's slots, set through their descriptors: a frozen dataclass's
# __init__ sets each field with object.__setattr__ by name, which cost a
# third of a charge's Python outside the statements on SQLite.
_NEW = object.__new__
_SET_EXISTS = SpendState.__dict__["exists"].__set__
_SET_SEEN = SpendState.__dict__["seen"].__set__
_SET_OTHER = SpendState.__dict__["other"].__set__
_SET_BALANCE = SpendState.__dict__["balance"].__set__
_SET_USED = SpendState.__dict__["used"].__set__


def spend_state_of(
    exists: bool, seen: LedgerEntry | None, other: bool, balance: int, used: int | None
) -> SpendState:
    """``SpendState(exists, seen, other, balance, used)`` for values of the declared
    types (a backend's own decode), without the frozen dataclass's ``__init__``."""
    state: SpendState = _NEW(SpendState)
    _SET_EXISTS(state, exists)
    _SET_SEEN(state, seen)
    _SET_OTHER(state, other)
    _SET_BALANCE(state, balance)
    _SET_USED(state, used)
    return state


@runtime_checkable
class SpendReader(Protocol):
    """An optional fast path a transaction may offer for :func:`read_spend_state`."""

    async def spend_state(
        self,
        owner: str,
        kind: EntryKind,
        other: EntryKind,
        ref: str,
        window: tuple[datetime, datetime] | None,
    ) -> SpendState:
        """Lock the owner's account and read a spend's facts in one call.

        The answer equals :func:`read_spend_state_reference`'s, and the
        account lock is held as
        :meth:`~chatsvg_core.storage.StoreTransaction.lock_account` holds it
        (an owner without an account: nothing locked, nothing created).
        """
        ...


async def read_spend_state_reference(
    tx: StoreTransaction,
    owner: str,
    kind: EntryKind,
    other: EntryKind,
    ref: str,
    window: tuple[datetime, datetime] | None,
) -> SpendState:
    """:func:`read_spend_state` over the fine primitives (the specification)."""
    exists = await tx.lock_account(owner)
    seen = await tx.find_entry(kind, ref)
    has_other = await tx.find_entry(other, ref) is not None
    balance = await tx.balance(owner)
    used = None if window is None else await tx.usage(owner, since=window[0], until=window[1])
    return SpendState(exists=exists, seen=seen, other=has_other, balance=balance, used=used)


async def read_spend_state(
    tx: StoreTransaction,
    owner: str,
    kind: EntryKind,
    other: EntryKind,
    ref: str,
    window: tuple[datetime, datetime] | None,
) -> SpendState:
    """Lock ``owner``'s account and read what a spend of ``kind`` for ``ref`` is decided on.

    ``window`` is the daily cap's ``[since, until)`` (``None``: no cap, usage
    not read). Uses the
    transaction's :class:`SpendReader` when it has one (one statement on the
    SQL backends), else :func:`read_spend_state_reference`.
    """
    # getattr rather than isinstance on the protocol: this runs once per
    # charge, and a runtime protocol check costs more than the statement.
    fast = getattr(tx, "spend_state", None)
    if fast is not None:
        state: SpendState = await fast(owner, kind, other, ref, window)
        return state
    return await read_spend_state_reference(tx, owner, kind, other, ref, window)
