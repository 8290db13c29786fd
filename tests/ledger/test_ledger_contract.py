"""The ledger's contract at its edges, from the survivors of a mutation run (docs/mutation.md).

Each test here failed against a mutant of ``ledger/_ops.py`` (or of the
idempotency semantics) that the rest of the suite let through.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest

from chatsvg_core.errors import ChatSVGError, InvalidAmount
from chatsvg_core.ledger import (
    InvalidOwner,
    InvalidReference,
    Ledger,
    LedgerConflict,
    LedgerPolicy,
    charge,
    grant,
)
from chatsvg_core.storage import EntryKind, LedgerEntry, MemoryStore, StoreTransaction
from chatsvg_core.testing import FakeClock

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
MAX_AMOUNT = 2**62


def ledger() -> Ledger:
    ids = (f"e{n}" for n in itertools.count())
    return Ledger(MemoryStore(), clock=FakeClock(T0), new_id=lambda: next(ids))


class _RaceWindow:
    """A transaction whose ``find_entry`` misses what is stored: the moment between
    a replay check and the insert, when another owner's transaction commits the same
    (kind, ref) first. The store then hands back that entry from ``insert_entry``."""

    def __init__(self, tx: StoreTransaction) -> None:
        self._tx = tx

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    async def find_entry(self, kind: EntryKind, ref: str) -> LedgerEntry | None:
        return None


async def test_an_entry_taken_first_by_another_owner_is_a_conflict_not_an_answer() -> None:
    store = MemoryStore()
    async with store.transaction() as tx:
        first = await grant(tx, "alice", 10, now=T0, external_id="pay-1")
    async with store.transaction() as tx:
        with pytest.raises(LedgerConflict) as caught:
            await grant(_RaceWindow(tx), "bob", 10, now=T0, external_id="pay-1")  # type: ignore[arg-type]
    assert caught.value.reason == "replay_mismatch"
    assert (caught.value.expected_owner, caught.value.owner) == ("alice", "bob")
    async with store.transaction() as tx:
        with pytest.raises(LedgerConflict):
            await grant(_RaceWindow(tx), "alice", 11, now=T0, external_id="pay-1")  # type: ignore[arg-type]
        # The same values are a replay that lost the race: the first entry, unchanged.
        again = await grant(_RaceWindow(tx), "alice", 10, now=T0, external_id="pay-1")  # type: ignore[arg-type]
        assert again == first
        assert await tx.balance("alice") == 10


async def test_a_charge_taken_first_by_another_owner_is_a_conflict() -> None:
    store = MemoryStore()
    async with store.transaction() as tx:
        await grant(tx, "alice", 10, now=T0)
        await grant(tx, "bob", 10, now=T0)
        await charge(tx, "alice", 3, ref="job-1", now=T0)
    async with store.transaction() as tx:
        with pytest.raises(LedgerConflict):
            await charge(_RaceWindow(tx), "bob", 3, ref="job-1", now=T0)  # type: ignore[arg-type]
    async with store.transaction() as tx:
        assert await tx.balance("bob") == 10


# --- exact limits -------------------------------------------------------------------


async def test_the_amount_limit_is_inclusive() -> None:
    book = ledger()
    entry = await book.grant("alice", MAX_AMOUNT)
    assert entry.amount == MAX_AMOUNT
    with pytest.raises(InvalidAmount) as caught:
        await book.grant("alice", MAX_AMOUNT + 1)
    assert caught.value.reason == "too_large"
    with pytest.raises(InvalidAmount):
        await book.charge("alice", MAX_AMOUNT + 1, ref="job-1")
    assert (await book.charge("alice", MAX_AMOUNT, ref="job-1")).amount == -MAX_AMOUNT
    assert await book.balance("alice") == 0


async def test_owners_and_references_of_one_character_are_valid() -> None:
    book = ledger()
    await book.grant("a", 5, external_id="p")
    assert (await book.charge("a", 2, ref="j")).ref == "j"
    assert await book.balance("a") == 3
    with pytest.raises(InvalidOwner):
        await book.grant("", 5)
    with pytest.raises(InvalidReference):
        await book.charge("a", 1, ref="")
    assert (await book.charge("a", 1, ref="r" * 255)).ref == "r" * 255
    with pytest.raises(InvalidReference):
        await book.charge("a", 1, ref="r" * 256)


async def test_a_memo_of_exactly_the_limit_is_kept() -> None:
    book = ledger()
    assert (await book.grant("alice", 5, memo="m" * 1000)).memo == "m" * 1000
    with pytest.raises(InvalidReference):
        await book.grant("alice", 5, memo="m" * 1001)


async def test_the_smallest_positive_adjustment_opens_the_account() -> None:
    book = ledger()
    await book.adjust("newcomer", 1)
    assert await book.balance("newcomer") == 1
    await book.adjust("newcomer", -1)
    assert await book.balance("newcomer") == 0


@pytest.mark.parametrize("ref", [7, None, b"job", ["job"]])
async def test_a_reference_that_is_not_a_string_is_an_invalid_reference(ref: object) -> None:
    book = ledger()
    await book.grant("alice", 5)
    with pytest.raises(InvalidReference) as caught:
        await book.charge("alice", 1, ref=ref)  # type: ignore[arg-type]
    assert caught.value.reason == "not_a_string"
    if ref is not None:  # no external id at all is a plain grant
        with pytest.raises(InvalidReference):
            await book.grant("alice", 1, external_id=ref)  # type: ignore[arg-type]


@pytest.mark.parametrize("owner", ["", "x" * 256, 5, None])
async def test_balance_of_an_invalid_owner_is_refused(owner: object) -> None:
    with pytest.raises(InvalidOwner):
        await ledger().balance(owner)  # type: ignore[arg-type]


# --- every refusal says exactly what was wrong -------------------------------------------
# A host shows these fields to its users and logs them: they are part of the contract.


async def _refused(call: Any, *, cap: int | None = None) -> tuple[str, str, dict[str, Any]]:
    ids = (f"e{n}" for n in itertools.count())
    book = Ledger(
        MemoryStore(),
        clock=FakeClock(T0),
        policy=LedgerPolicy(daily_cap=cap),
        new_id=lambda: next(ids),
    )
    await book.grant("alice", 10)
    with pytest.raises(ChatSVGError) as caught:
        await call(book)
    exc = caught.value
    return type(exc).__name__, exc.message, dict(exc.fields)


async def _charge_twice(book: Ledger) -> None:
    await book.charge("alice", 1, ref="j")
    await book.charge("alice", 2, ref="j")


async def _charge_then_reserve(book: Ledger) -> None:
    await book.charge("alice", 1, ref="j")
    await book.reserve("alice", 1, ref="j")


async def _capture_after_release(book: Ledger) -> None:
    await book.reserve("alice", 1, ref="j")
    await book.release("j")
    await book.capture("j")


async def _release_after_capture(book: Ledger) -> None:
    await book.reserve("alice", 1, ref="j")
    await book.capture("j")
    await book.release("j")


async def _over_the_cap(book: Ledger) -> None:
    await book.charge("alice", 3, ref="j1")
    await book.charge("alice", 3, ref="j2")


BIG = 2**62
REFUSALS: list[tuple[str, Any, str, str, dict[str, Any]]] = [
    ("str", lambda b: b.grant("alice", "5"), "InvalidAmount",
     "an amount is a whole number of credits, not str",
     {"owner": "alice", "amount": "'5'", "reason": "not_an_int"}),
    ("bool", lambda b: b.grant("alice", True), "InvalidAmount",
     "an amount is a whole number of credits, not bool",
     {"owner": "alice", "amount": "True", "reason": "not_an_int"}),
    ("float", lambda b: b.charge("alice", 1.5, ref="j"), "InvalidAmount",
     "an amount is a whole number of credits, not float",
     {"owner": "alice", "amount": "1.5", "reason": "not_an_int"}),
    ("zero", lambda b: b.grant("alice", 0), "InvalidAmount",
     "the amount must be positive, got 0",
     {"owner": "alice", "amount": 0, "reason": "not_positive"}),
    ("negative", lambda b: b.charge("alice", -3, ref="j"), "InvalidAmount",
     "the amount must be positive, got -3",
     {"owner": "alice", "amount": -3, "reason": "not_positive"}),
    ("too large", lambda b: b.grant("alice", BIG + 1), "InvalidAmount",
     f"the amount exceeds {BIG}", {"owner": "alice", "amount": BIG + 1, "reason": "too_large"}),
    ("adjust zero", lambda b: b.adjust("alice", 0), "InvalidAmount",
     "the amount must not be zero", {"owner": "alice", "amount": 0, "reason": "zero"}),
    ("adjust too large", lambda b: b.adjust("alice", -BIG - 1), "InvalidAmount",
     f"the amount exceeds {BIG}", {"owner": "alice", "amount": -BIG - 1, "reason": "too_large"}),
    ("memo int", lambda b: b.grant("alice", 1, memo=5), "InvalidReference",
     "a memo is a string of at most 1000 characters, or None",
     {"what": "memo", "reason": "not_a_string"}),
    ("memo long", lambda b: b.grant("alice", 1, memo="m" * 1001), "InvalidReference",
     "a memo is a string of at most 1000 characters, or None",
     {"what": "memo", "reason": "length"}),
    ("ref long", lambda b: b.charge("alice", 1, ref="r" * 256), "InvalidReference",
     "ref must have 1 to 255 characters", {"what": "ref", "reason": "length"}),
    ("ref int", lambda b: b.charge("alice", 1, ref=3), "InvalidReference",
     "ref must be a string", {"what": "ref", "reason": "not_a_string"}),
    ("short", lambda b: b.charge("alice", 11, ref="j"), "InsufficientCredits",
     "owner 'alice' has 10 credits, 11 needed", {"owner": "alice", "balance": 10, "amount": 11}),
    ("no account", lambda b: b.charge("bob", 1, ref="j"), "InsufficientCredits",
     "owner 'bob' has 0 credits, 1 needed", {"owner": "bob", "balance": 0, "amount": 1}),
    ("external id long", lambda b: b.grant("alice", 1, external_id="p" * 256), "InvalidReference",
     "external_id must have 1 to 255 characters", {"what": "external_id", "reason": "length"}),
    ("refund ref long", lambda b: b.refund("r" * 256), "InvalidReference",
     "ref must have 1 to 255 characters", {"what": "ref", "reason": "length"}),
    ("capture ref int", lambda b: b.capture(3), "InvalidReference",
     "ref must be a string", {"what": "ref", "reason": "not_a_string"}),
    ("adjust ref empty", lambda b: b.adjust("alice", 1, ref=""), "InvalidReference",
     "ref must have 1 to 255 characters", {"what": "ref", "reason": "length"}),
    ("adjust short", lambda b: b.adjust("alice", -11), "InsufficientCredits",
     "owner 'alice' has 10 credits; cannot take 11",
     {"owner": "alice", "balance": 10, "amount": 11}),
    ("adjust no account", lambda b: b.adjust("bob", -1), "InsufficientCredits",
     "owner 'bob' has 0 credits; cannot take 1", {"owner": "bob", "balance": 0, "amount": 1}),
    ("capture after release", _capture_after_release, "LedgerConflict",
     "the reservation of job 'j' was already settled by a release",
     {"kind": "capture", "ref": "j", "reason": "already_released"}),
    ("release after capture", _release_after_capture, "LedgerConflict",
     "the reservation of job 'j' was already settled by a capture",
     {"kind": "release", "ref": "j", "reason": "already_captured"}),
    ("refund", lambda b: b.refund("nojob"), "RefundWithoutCharge",
     "job 'nojob' has no charge to refund", {"ref": "nojob"}),
    ("two modes", _charge_then_reserve, "LedgerConflict",
     "job 'j' already has a charge; one job uses one mode",
     {"kind": "reserve", "ref": "j", "reason": "has_charge"}),
    ("replay", _charge_twice, "LedgerConflict",
     "charge 'j' was already written with other values",
     {"kind": "charge", "ref": "j", "reason": "replay_mismatch", "owner": "alice",
      "expected_owner": "alice", "amount": -2, "expected_amount": -1}),
    ("capture", lambda b: b.capture("nojob"), "NoReservation",
     "job 'nojob' has no reservation to capture", {"ref": "nojob"}),
    ("release", lambda b: b.release("nojob"), "NoReservation",
     "job 'nojob' has no reservation to release", {"ref": "nojob"}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "kind", "message", "fields"),
    [pytest.param(*row[1:], id=row[0]) for row in REFUSALS],
)
async def test_each_refusal_names_its_cause_exactly(
    call: Any, kind: str, message: str, fields: dict[str, Any]
) -> None:
    assert await _refused(call) == (kind, message, fields)


async def test_a_daily_cap_refusal_says_what_was_used_and_when_it_resets() -> None:
    assert await _refused(_over_the_cap, cap=5) == (
        "DailyCapExceeded",
        "owner 'alice' used 3 of a daily cap of 5; 3 more is too many",
        {"owner": "alice", "cap": 5, "used": 3, "amount": 3,
         "resets_at": "2026-03-02T00:00:00+00:00"},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("call", "message", "fields"),
    [
        (lambda tx: grant(tx, "alice", 1, now="today"), "now must be a datetime, not str",
         {"what": "now", "reason": "not_a_datetime"}),
        (lambda tx: charge(tx, "alice", 1, ref="j", now=T0, daily_cap=-1),
         "a daily cap is a non-negative int or None", {"amount": "-1", "reason": "bad_cap"}),
        (lambda tx: charge(tx, "alice", 1, ref="j", now=T0, daily_cap=True),
         "a daily cap is a non-negative int or None", {"amount": "True", "reason": "bad_cap"}),
    ],
)  # fmt: skip
async def test_bad_arguments_to_the_operations_are_named(
    call: Any, message: str, fields: dict[str, Any]
) -> None:
    async with MemoryStore().transaction() as tx:
        with pytest.raises(ChatSVGError) as caught:
            await call(tx)
    assert (caught.value.message, dict(caught.value.fields)) == (message, fields)
