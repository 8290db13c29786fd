"""The ledger's rules, written once over the storage primitives.

Every function takes an open :class:`~chatsvg_core.storage.StoreTransaction`
and does its reads and its write inside it, holding the owner's account lock,
so the engine can make "claim + charge" or "fail + refund" one atomic step.
A function that raises has written nothing the caller's transaction keeps:
the checks all run before the single ``insert_entry``, and a conflict found
after it is raised so the caller's transaction rolls back.

Exactly-once comes from two layers: the checks under the account lock, and
the store's unique (kind, ref) constraint, which holds even for two
transactions that lock different owners while naming the same reference.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final
from uuid import uuid4

from chatsvg_core._clock import utc
from chatsvg_core._construct import built
from chatsvg_core._owner import MAX_OWNER, validate_owner
from chatsvg_core.errors import (
    DailyCapExceeded,
    InsufficientCredits,
    InvalidAmount,
    RefundWithoutCharge,
)
from chatsvg_core.ledger._errors import (
    InvalidReference,
    LedgerConflict,
    NoReservation,
)
from chatsvg_core.ledger._policy import DayBoundary
from chatsvg_core.storage import EntryKind, LedgerEntry, StoreTransaction
from chatsvg_core.storage._spend import SpendState, read_spend_state_reference

__all__ = [
    "IdFactory",
    "adjust",
    "balance",
    "capture",
    "charge",
    "grant",
    "refund",
    "release",
    "reserve",
]

IdFactory = Callable[[], str]
"""Makes a new, unique entry id."""

_UTC_DAY: Final = DayBoundary()
# Read on every engine charge: a member read through its class costs a
# descriptor call written in Python on 3.11.
_CHARGE: Final = EntryKind.CHARGE
_RESERVE: Final = EntryKind.RESERVE
_MAX_REF: Final = 255
_MAX_MEMO: Final = 1000
_MAX_AMOUNT: Final = 2**62
"""Amounts beyond this would overflow a signed 64-bit column once summed."""


def _uuid() -> str:
    return uuid4().hex


def _check_amount(amount: object, *, owner: str | None, positive: bool = True) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidAmount(
            f"an amount is a whole number of credits, not {type(amount).__name__}",
            owner=owner,
            amount=repr(amount),
            reason="not_an_int",
        )
    if positive and amount <= 0:
        raise InvalidAmount(
            f"the amount must be positive, got {amount}",
            owner=owner,
            amount=amount,
            reason="not_positive",
        )
    if amount == 0:
        raise InvalidAmount("the amount must not be zero", owner=owner, amount=0, reason="zero")
    if abs(amount) > _MAX_AMOUNT:
        raise InvalidAmount(
            f"the amount exceeds {_MAX_AMOUNT}", owner=owner, amount=amount, reason="too_large"
        )
    return amount


_check_owner = validate_owner


def _check_memo(memo: object) -> str | None:
    if memo is not None and (not isinstance(memo, str) or len(memo) > _MAX_MEMO):
        raise InvalidReference(
            f"a memo is a string of at most {_MAX_MEMO} characters, or None",
            what="memo",
            reason="not_a_string" if not isinstance(memo, str) else "length",
        )
    return memo


def _check_now(now: object) -> datetime:
    if not isinstance(now, datetime):
        raise InvalidReference(
            f"now must be a datetime, not {type(now).__name__}", what="now", reason="not_a_datetime"
        )
    return utc(now)


def _check_ref(ref: object, what: str) -> str:
    if not isinstance(ref, str):
        raise InvalidReference(f"{what} must be a string", what=what, reason="not_a_string")
    if not 1 <= len(ref) <= _MAX_REF:
        raise InvalidReference(
            f"{what} must have 1 to {_MAX_REF} characters", what=what, reason="length"
        )
    return ref


def _check_cap(cap: int | None) -> int | None:
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
        raise InvalidAmount(
            "a daily cap is a non-negative int or None", amount=repr(cap), reason="bad_cap"
        )
    return cap


async def _locked(tx: StoreTransaction, owner: str) -> bool:
    """Lock the owner's account; ``False`` when the owner has none (nothing to lock).

    An owner without an account is an owner with a balance of 0, everywhere:
    reads answer 0 and spending answers :class:`InsufficientCredits`.
    """
    return await tx.lock_account(owner)


def _short_of(owner: str, available: int, amount: int) -> InsufficientCredits:
    return InsufficientCredits(
        f"owner {owner!r} has {available} credits, {amount} needed",
        owner=owner,
        balance=available,
        amount=amount,
    )


def _same(found: LedgerEntry, owner: str, amount: int) -> LedgerEntry:
    """``found`` if it is the entry a replay of (owner, amount) would have written."""
    if found.owner != owner or found.amount != amount:
        raise LedgerConflict(
            f"{found.kind.value} {found.ref!r} was already written with other values",
            kind=found.kind.value,
            ref=found.ref,
            reason="replay_mismatch",
            owner=owner,
            expected_owner=found.owner,
            amount=amount,
            expected_amount=found.amount,
        )
    return found


def entry(
    *,
    id: str,
    owner: str,
    kind: EntryKind,
    amount: int,
    ref: str | None,
    memo: str | None,
    created_at: datetime,
) -> LedgerEntry:
    """``LedgerEntry(...)``, built without validation when every value is already
    what validation makes of it (see ``chatsvg_core._construct``; property test in
    tests/storage/test_construct.py)."""
    if (
        type(id) is str
        and type(owner) is str
        and 1 <= len(owner) <= 255
        and type(kind) is EntryKind
        and type(amount) is int
        and (ref is None or type(ref) is str)
        and (memo is None or type(memo) is str)
        and type(created_at) is datetime
        and created_at.tzinfo is UTC
    ):
        return built(
            LedgerEntry,
            {
                "id": id,
                "owner": owner,
                "kind": kind,
                "amount": amount,
                "ref": ref,
                "memo": memo,
                "created_at": created_at,
            },
        )
    return LedgerEntry(
        id=id, owner=owner, kind=kind, amount=amount, ref=ref, memo=memo, created_at=created_at
    )


async def _append(
    tx: StoreTransaction,
    *,
    owner: str,
    kind: EntryKind,
    amount: int,
    ref: str | None,
    now: datetime,
    memo: str | None,
    new_id: IdFactory,
) -> LedgerEntry:
    wanted = entry(
        id=new_id(), owner=owner, kind=kind, amount=amount, ref=ref, memo=memo, created_at=now
    )
    written = await tx.insert_entry(wanted)
    # Another transaction (holding another owner's lock) may have taken this
    # (kind, ref) first: the store then hands back its entry instead of ours.
    return written if written.id == wanted.id else _same(written, owner, amount)


async def grant(
    tx: StoreTransaction,
    owner: str,
    amount: int,
    *,
    now: datetime,
    external_id: str | None = None,
    memo: str | None = None,
    new_id: IdFactory = _uuid,
) -> LedgerEntry:
    """Give ``owner`` ``amount`` credits, creating the account if needed.

    With an ``external_id`` (a payment id, say) the grant is idempotent: a
    second call with the same id returns the first entry and gives nothing.

    Raises:
        InvalidAmount: ``amount`` is not a positive int.
        InvalidOwner: ``owner`` is empty or too long.
        LedgerConflict: ``external_id`` was used for another owner or amount.
    """
    owner = _check_owner(owner)
    amount = _check_amount(amount, owner=owner)
    now = _check_now(now)
    memo = _check_memo(memo)
    if external_id is not None:
        _check_ref(external_id, "external_id")
        # Entries never change, so a replay is answered without any lock (and
        # a mismatched replay creates no account on its way to the error).
        seen = await tx.find_entry(EntryKind.GRANT, external_id)
        if seen is not None:
            return _same(seen, owner, amount)
    await tx.lock_account(owner, create=True)
    return await _append(
        tx,
        owner=owner,
        kind=EntryKind.GRANT,
        amount=amount,
        ref=external_id,
        now=now,
        memo=memo,
        new_id=new_id,
    )


async def _spend(
    tx: StoreTransaction,
    kind: EntryKind,
    other: EntryKind,
    owner: str,
    amount: int,
    *,
    ref: str,
    now: datetime,
    daily_cap: int | None,
    day: DayBoundary,
    memo: str | None,
    new_id: IdFactory,
) -> tuple[LedgerEntry, bool]:
    owner = _check_owner(owner)
    amount = _check_amount(amount, owner=owner)
    ref = _check_ref(ref, "ref")
    cap = _check_cap(daily_cap)
    now = _check_now(now)
    memo = _check_memo(memo)
    return await _spend_checked(tx, kind, other, owner, amount, ref, now, cap, day, memo, new_id)


async def _spend_checked(
    tx: StoreTransaction,
    kind: EntryKind,
    other: EntryKind,
    owner: str,
    amount: int,
    ref: str,
    now: datetime,
    cap: int | None,
    day: DayBoundary,
    memo: str | None,
    new_id: IdFactory,
    plain: bool = False,
) -> tuple[LedgerEntry, bool]:
    """A spend's decisions and its write, for arguments :func:`_spend` has checked.

    Returns the job's entry of ``kind`` and whether this call wrote it
    (``False``: a replay, which takes nothing). ``plain``: the caller found
    every argument of the exact type :func:`entry` builds without validation
    (an exact ``str`` owner of 1 to 255 characters and ref, an ``int``
    amount, ``now`` in ``UTC``, ``memo`` ``None`` or a ``str``).
    """
    window = None if cap is None else day.window(now)
    # One read of every fact below, under the account lock (one statement on
    # the SQL backends); the decisions are made here, in order. read_spend_state's
    # dispatch inline: a coroutine less per charge.
    fast = getattr(tx, "spend_state", None)
    if fast is not None:
        state: SpendState = await fast(owner, kind, other, ref, window)
    else:
        state = await read_spend_state_reference(tx, owner, kind, other, ref, window)
    if state.seen is not None:
        return _same(state.seen, owner, -amount), False
    if not state.exists:
        raise _short_of(owner, 0, amount)
    if state.other:
        raise LedgerConflict(
            f"job {ref!r} already has a {other.value}; one job uses one mode",
            kind=kind.value,
            ref=ref,
            reason=f"has_{other.value}",
        )
    available = state.balance
    if available < amount:
        raise _short_of(owner, available, amount)
    if cap is not None:
        assert window is not None and state.used is not None
        end = window[1]
        used = state.used
        if used + amount > cap:
            raise DailyCapExceeded(
                f"owner {owner!r} used {used} of a daily cap of {cap}; {amount} more is too many",
                owner=owner,
                cap=cap,
                used=used,
                amount=amount,
                resets_at=end.isoformat(),
            )
    # _append inline (a coroutine less), telling a write of ours from a replay.
    entry_id = new_id()
    if plain and type(entry_id) is str:
        # entry()'s own test, passed: the caller vouched for every other value.
        wanted = built(
            LedgerEntry,
            {
                "id": entry_id,
                "owner": owner,
                "kind": kind,
                "amount": -amount,
                "ref": ref,
                "memo": memo,
                "created_at": now,
            },
        )
    else:
        wanted = entry(
            id=entry_id, owner=owner, kind=kind, amount=-amount, ref=ref, memo=memo, created_at=now
        )
    written = await tx.insert_entry(wanted)
    # The store hands back our entry itself when it wrote it (the SQL and
    # memory stores do): no two pydantic attribute reads.
    if written is wanted or written.id == wanted.id:
        return written, True
    # Another transaction (holding another owner's lock) took this (kind, ref)
    # first: the store handed back its entry instead of ours.
    return _same(written, owner, -amount), False


async def charge_for_job(
    tx: StoreTransaction,
    owner: str,
    amount: int,
    *,
    ref: str,
    now: datetime,
    daily_cap: int | None,
    day: DayBoundary,
    new_id: IdFactory,
) -> tuple[LedgerEntry, bool]:
    """:func:`charge` for the engine's claim, also saying whether this call wrote the charge.

    The same checks, decisions and errors as :func:`charge` (one
    :func:`_spend_checked`); the argument checks are one test of the values
    they return unchanged (what the engine passes: a stored job's owner and
    id, its clock's ``now``, its price and cap), and anything else takes
    :func:`charge`'s checks, which raise as they always did. A property test
    in tests/ledger holds the two equal.
    """
    if (
        type(amount) is int
        and 0 < amount <= _MAX_AMOUNT
        and type(ref) is str
        and 0 < len(ref) <= _MAX_REF
        and (daily_cap is None or (type(daily_cap) is int and daily_cap >= 0))
        and type(now) is datetime
        and now.tzinfo is UTC
        and type(owner) is str
        and 0 < len(owner) <= MAX_OWNER
        and owner.isascii()
        and owner.isprintable()
    ):
        return await _spend_checked(
            tx,
            _CHARGE,
            _RESERVE,
            owner,
            amount,
            ref,
            now,
            daily_cap,
            day,
            None,
            new_id,
            True,
        )
    return await _spend(
        tx,
        EntryKind.CHARGE,
        EntryKind.RESERVE,
        owner,
        amount,
        ref=ref,
        now=now,
        daily_cap=daily_cap,
        day=day,
        memo=None,
        new_id=new_id,
    )


async def charge(
    tx: StoreTransaction,
    owner: str,
    amount: int,
    *,
    ref: str,
    now: datetime,
    daily_cap: int | None = None,
    day: DayBoundary = _UTC_DAY,
    memo: str | None = None,
    new_id: IdFactory = _uuid,
) -> LedgerEntry:
    """Take ``amount`` credits from ``owner`` for job ``ref``, at most once per ``ref``.

    A repeat for the same ``ref`` returns the first charge and takes nothing,
    whatever the balance is now. The checks and the write happen under the
    account lock, so they hold under any concurrency.

    Raises:
        InsufficientCredits: the balance is below ``amount`` (an owner with
            no account has a balance of 0); nothing written.
        DailyCapExceeded: today's net usage plus ``amount`` would exceed
            ``daily_cap``; nothing written.
        InvalidAmount, InvalidOwner: bad input.
        LedgerConflict: ``ref`` was charged to another owner or amount, or
            has a two-phase reservation.
    """
    spent, _ = await _spend(
        tx,
        EntryKind.CHARGE,
        EntryKind.RESERVE,
        owner,
        amount,
        ref=ref,
        now=now,
        daily_cap=daily_cap,
        day=day,
        memo=memo,
        new_id=new_id,
    )
    return spent


async def reserve(
    tx: StoreTransaction,
    owner: str,
    amount: int,
    *,
    ref: str,
    now: datetime,
    daily_cap: int | None = None,
    day: DayBoundary = _UTC_DAY,
    memo: str | None = None,
    new_id: IdFactory = _uuid,
) -> LedgerEntry:
    """Two-phase mode: hold ``amount`` credits for job ``ref`` (a pending transfer).

    The held credits leave the balance at once (so they cannot be spent
    twice) and count toward the daily cap until released. Same checks, errors
    and exactly-once rule as :func:`charge`; a job is either charged or
    reserved, never both.
    """
    held, _ = await _spend(
        tx,
        EntryKind.RESERVE,
        EntryKind.CHARGE,
        owner,
        amount,
        ref=ref,
        now=now,
        daily_cap=daily_cap,
        day=day,
        memo=memo,
        new_id=new_id,
    )
    return held


async def refund(
    tx: StoreTransaction,
    ref: str,
    *,
    now: datetime,
    memo: str | None = None,
    new_id: IdFactory = _uuid,
) -> LedgerEntry:
    """Give back the charge of job ``ref``: exactly its amount, at most once.

    A repeat returns the first refund. Raises :class:`RefundWithoutCharge`
    when ``ref`` was never charged (nothing written).
    """
    ref = _check_ref(ref, "ref")
    now = _check_now(now)
    memo = _check_memo(memo)
    charged = await tx.find_entry(EntryKind.CHARGE, ref)
    if charged is None:
        raise RefundWithoutCharge(f"job {ref!r} has no charge to refund", ref=ref)
    await _locked(tx, charged.owner)
    seen = await tx.find_entry(EntryKind.REFUND, ref)
    if seen is not None:
        return _same(seen, charged.owner, -charged.amount)
    return await _append(
        tx,
        owner=charged.owner,
        kind=EntryKind.REFUND,
        amount=-charged.amount,
        ref=ref,
        now=now,
        memo=memo,
        new_id=new_id,
    )


async def _settle(
    tx: StoreTransaction,
    ref: str,
    kind: EntryKind,
    other: EntryKind,
    *,
    now: datetime,
    memo: str | None,
    new_id: IdFactory,
) -> LedgerEntry:
    ref = _check_ref(ref, "ref")
    now = _check_now(now)
    memo = _check_memo(memo)
    held = await tx.find_entry(EntryKind.RESERVE, ref)
    if held is None:
        raise NoReservation(f"job {ref!r} has no reservation to {kind.value}", ref=ref)
    await _locked(tx, held.owner)
    amount = 0 if kind is EntryKind.CAPTURE else -held.amount
    seen = await tx.find_entry(kind, ref)
    if seen is not None:
        return _same(seen, held.owner, amount)
    if await tx.find_entry(other, ref) is not None:
        raise LedgerConflict(
            f"the reservation of job {ref!r} was already settled by a {other.value}",
            kind=kind.value,
            ref=ref,
            reason=f"already_{other.value}d",
        )
    return await _append(
        tx, owner=held.owner, kind=kind, amount=amount, ref=ref, now=now, memo=memo, new_id=new_id
    )


async def capture(
    tx: StoreTransaction,
    ref: str,
    *,
    now: datetime,
    memo: str | None = None,
    new_id: IdFactory = _uuid,
) -> LedgerEntry:
    """Two-phase mode: make the reservation of job ``ref`` final (an entry of amount 0).

    At most once; a repeat returns the first capture. Raises
    :class:`NoReservation` without a reservation, :class:`LedgerConflict`
    after a release.
    """
    return await _settle(
        tx, ref, EntryKind.CAPTURE, EntryKind.RELEASE, now=now, memo=memo, new_id=new_id
    )


async def release(
    tx: StoreTransaction,
    ref: str,
    *,
    now: datetime,
    memo: str | None = None,
    new_id: IdFactory = _uuid,
) -> LedgerEntry:
    """Two-phase mode: return the reservation of job ``ref`` in full, at most once.

    A repeat returns the first release. Raises :class:`NoReservation` without
    a reservation, :class:`LedgerConflict` after a capture.
    """
    return await _settle(
        tx, ref, EntryKind.RELEASE, EntryKind.CAPTURE, now=now, memo=memo, new_id=new_id
    )


async def adjust(
    tx: StoreTransaction,
    owner: str,
    amount: int,
    *,
    now: datetime,
    ref: str | None = None,
    memo: str | None = None,
    new_id: IdFactory = _uuid,
) -> LedgerEntry:
    """An operator's correction of either sign (never zero); a positive one opens the account.

    With a ``ref`` it is idempotent like a grant. A negative adjustment
    cannot take the balance below zero. Adjustments never count toward the
    daily cap (they are not usage).

    Raises:
        InsufficientCredits: a negative adjustment would take the balance below zero.
        InvalidAmount: zero, or not an int.
        InvalidOwner: the owner id is empty or too long.
        LedgerConflict: ``ref`` was used before with other values.
    """
    owner = _check_owner(owner)
    amount = _check_amount(amount, owner=owner, positive=False)
    now = _check_now(now)
    memo = _check_memo(memo)
    if ref is not None:
        _check_ref(ref, "ref")
    # A positive correction opens the account, as a grant does.
    has_account = await tx.lock_account(owner, create=amount > 0)
    if ref is not None:
        seen = await tx.find_entry(EntryKind.ADJUSTMENT, ref)
        if seen is not None:
            return _same(seen, owner, amount)
    if amount < 0:
        available = await tx.balance(owner) if has_account else 0
        if available + amount < 0:
            raise InsufficientCredits(
                f"owner {owner!r} has {available} credits; cannot take {-amount}",
                owner=owner,
                balance=available,
                amount=-amount,
            )
    return await _append(
        tx,
        owner=owner,
        kind=EntryKind.ADJUSTMENT,
        amount=amount,
        ref=ref,
        now=now,
        memo=memo,
        new_id=new_id,
    )


async def balance(tx: StoreTransaction, owner: str) -> int:
    """The owner's balance (sum of entries), read under the account lock; 0 without an account."""
    owner = _check_owner(owner)
    if not await _locked(tx, owner):
        return 0
    return await tx.balance(owner)
