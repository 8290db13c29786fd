"""Concrete examples of the ledger's rules and of every typed error it raises."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from chatsvg_core.errors import (
    DailyCapExceeded,
    InsufficientCredits,
    InvalidAmount,
    RefundWithoutCharge,
)
from chatsvg_core.ledger import (
    DayBoundary,
    InvalidOwner,
    InvalidReference,
    Ledger,
    LedgerConflict,
    LedgerPolicy,
    NoReservation,
    charge,
)
from chatsvg_core.storage import EntryKind, MemoryStore, StoreClosed
from chatsvg_core.testing import FakeClock

START = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def make(cap: int | None = None, day: DayBoundary | None = None) -> tuple[Ledger, FakeClock]:
    clock = FakeClock(START)
    ids = (f"e{n}" for n in itertools.count())
    policy = LedgerPolicy(daily_cap=cap, day=day or DayBoundary())
    return Ledger(MemoryStore(), clock=clock, policy=policy, new_id=lambda: next(ids)), clock


async def test_grant_charge_refund_round_trip() -> None:
    ledger, _ = make()
    g = await ledger.grant("alice", 10, external_id="pay-1", memo="bought")
    assert (g.kind, g.amount, g.ref, g.id, g.memo) == (EntryKind.GRANT, 10, "pay-1", "e0", "bought")
    c = await ledger.charge("alice", 4, ref="job-1")
    assert (c.kind, c.amount, c.ref) == (EntryKind.CHARGE, -4, "job-1")
    assert await ledger.balance("alice") == 6
    r = await ledger.refund("job-1")
    assert (r.kind, r.amount, r.owner) == (EntryKind.REFUND, 4, "alice")
    assert await ledger.balance("alice") == 10
    st = await ledger.statement("alice")
    assert st.balance == 10
    assert [e.kind for e in st.entries] == [EntryKind.REFUND, EntryKind.CHARGE, EntryKind.GRANT]


async def test_replays_return_the_original_entry() -> None:
    ledger, clock = make()
    g = await ledger.grant("alice", 10, external_id="pay-1")
    assert await ledger.grant("alice", 10, external_id="pay-1") == g
    c = await ledger.charge("alice", 4, ref="job-1")
    clock.advance(60)
    assert await ledger.charge("alice", 4, ref="job-1") == c
    r = await ledger.refund("job-1")
    assert await ledger.refund("job-1") == r
    assert await ledger.balance("alice") == 10
    assert len((await ledger.statement("alice")).entries) == 3


async def test_grants_without_external_id_add_up() -> None:
    ledger, _ = make()
    await ledger.grant("alice", 1)
    await ledger.grant("alice", 2)
    assert await ledger.balance("alice") == 3


async def test_charge_replay_ignores_the_current_balance() -> None:
    ledger, _ = make()
    await ledger.grant("alice", 5)
    c = await ledger.charge("alice", 5, ref="job-1")
    assert await ledger.balance("alice") == 0
    assert await ledger.charge("alice", 5, ref="job-1") == c


@pytest.mark.parametrize("bad", [0, -1, -100])
async def test_non_positive_amounts_are_refused(bad: int) -> None:
    ledger, _ = make()
    await ledger.grant("alice", 10)
    with pytest.raises(InvalidAmount) as grant_err:
        await ledger.grant("alice", bad)
    assert grant_err.value.reason == "not_positive"
    with pytest.raises(InvalidAmount):
        await ledger.charge("alice", bad, ref="job-1")
    with pytest.raises(InvalidAmount):
        await ledger.reserve("alice", bad, ref="job-2")
    assert await ledger.balance("alice") == 10


@pytest.mark.parametrize("bad", [1.5, "3", True, None])
async def test_non_int_amounts_are_refused(bad: object) -> None:
    ledger, _ = make()
    with pytest.raises(InvalidAmount) as err:
        await ledger.grant("alice", bad)  # type: ignore[arg-type]
    assert err.value.reason == "not_an_int"


async def test_zero_adjustment_and_huge_amounts_are_refused() -> None:
    ledger, _ = make()
    await ledger.grant("alice", 1)
    with pytest.raises(InvalidAmount) as zero:
        await ledger.adjust("alice", 0)
    assert zero.value.reason == "zero"
    with pytest.raises(InvalidAmount) as huge:
        await ledger.grant("alice", 2**63)
    assert huge.value.reason == "too_large"


@pytest.mark.parametrize("owner", ["", "x" * 256])
async def test_bad_owner_ids_are_refused(owner: str) -> None:
    ledger, _ = make()
    with pytest.raises(InvalidOwner):
        await ledger.grant(owner, 1)


async def test_an_owner_without_an_account_has_a_balance_of_zero() -> None:
    ledger, _ = make()
    with pytest.raises(InsufficientCredits) as err:
        await ledger.charge("ghost", 1, ref="job-1")
    assert (err.value.owner, err.value.balance, err.value.amount) == ("ghost", 0, 1)
    with pytest.raises(InsufficientCredits):
        await ledger.reserve("ghost", 1, ref="job-2")
    with pytest.raises(InsufficientCredits):
        await ledger.adjust("ghost", -5)
    assert await ledger.balance("ghost") == 0
    assert (await ledger.statement("ghost")).entries == ()
    assert (await ledger.usage("ghost")).used == 0
    await ledger.adjust("ghost", 5)  # a positive correction opens the account
    assert await ledger.balance("ghost") == 5


async def test_refund_of_unknown_job() -> None:
    ledger, _ = make()
    await ledger.grant("alice", 3)
    with pytest.raises(RefundWithoutCharge) as err:
        await ledger.refund("never-charged")
    assert err.value.ref == "never-charged"
    assert await ledger.balance("alice") == 3


async def test_insufficient_credits_writes_nothing() -> None:
    ledger, _ = make()
    await ledger.grant("alice", 3)
    with pytest.raises(InsufficientCredits) as err:
        await ledger.charge("alice", 4, ref="job-1")
    assert (err.value.balance, err.value.amount) == (3, 4)
    assert len((await ledger.statement("alice")).entries) == 1
    # The ref stays free: a later charge with enough credits goes through.
    await ledger.grant("alice", 1)
    assert (await ledger.charge("alice", 4, ref="job-1")).amount == -4
    assert await ledger.balance("alice") == 0


async def test_negative_adjustment_never_goes_below_zero() -> None:
    ledger, _ = make()
    await ledger.grant("alice", 3)
    with pytest.raises(InsufficientCredits):
        await ledger.adjust("alice", -4)
    a = await ledger.adjust("alice", -3, ref="fix-1", memo="chargeback")
    assert await ledger.adjust("alice", -3, ref="fix-1") == a
    assert await ledger.balance("alice") == 0


async def test_replay_with_other_values_is_a_conflict() -> None:
    ledger, _ = make()
    await ledger.grant("alice", 10, external_id="pay-1")
    await ledger.grant("bob", 10)
    with pytest.raises(LedgerConflict) as err:
        await ledger.grant("alice", 11, external_id="pay-1")
    assert err.value.reason == "replay_mismatch"
    with pytest.raises(LedgerConflict):
        await ledger.grant("bob", 10, external_id="pay-1")
    await ledger.charge("alice", 2, ref="job-1")
    with pytest.raises(LedgerConflict):
        await ledger.charge("alice", 3, ref="job-1")
    with pytest.raises(LedgerConflict):
        await ledger.charge("bob", 2, ref="job-1")
    assert await ledger.balance("alice") == 8
    assert await ledger.balance("bob") == 10


async def test_daily_cap_counts_net_usage_on_the_day_of_the_charge() -> None:
    ledger, clock = make(cap=10)
    await ledger.grant("alice", 100)
    await ledger.charge("alice", 6, ref="j1")
    with pytest.raises(DailyCapExceeded) as err:
        await ledger.charge("alice", 5, ref="j2")
    assert (err.value.cap, err.value.used, err.value.amount) == (10, 6, 5)
    assert err.value.resets_at == "2026-03-02T00:00:00+00:00"
    await ledger.charge("alice", 4, ref="j3")  # exactly the cap
    usage = await ledger.usage("alice")
    assert (usage.used, usage.remaining) == (10, 0)
    await ledger.refund("j1")  # a refund gives the day its credits back
    await ledger.charge("alice", 5, ref="j2")
    # A refund made tomorrow of today's charge does not raise tomorrow's room.
    clock.set(datetime(2026, 3, 2, 0, 0, tzinfo=UTC))
    await ledger.charge("alice", 10, ref="j4")
    await ledger.refund("j3")
    with pytest.raises(DailyCapExceeded):
        await ledger.charge("alice", 1, ref="j5")
    assert await ledger.balance("alice") == 100 - 5 - 10


async def test_daily_cap_override_and_zero_cap() -> None:
    ledger, _ = make(cap=5)
    await ledger.grant("alice", 100)
    await ledger.charge("alice", 50, ref="big", daily_cap=None)
    with pytest.raises(DailyCapExceeded):
        await ledger.charge("alice", 1, ref="none", daily_cap=0)
    with pytest.raises(InvalidAmount) as bad_cap:
        await ledger.charge("alice", 1, ref="neg", daily_cap=-1)
    assert bad_cap.value.reason == "bad_cap"


async def test_day_boundary_in_a_fixed_offset() -> None:
    ist = DayBoundary(timezone(timedelta(hours=5, minutes=30)))
    ledger, clock = make(cap=5, day=ist)
    await ledger.grant("alice", 100)
    clock.set(datetime(2026, 3, 1, 18, 29, tzinfo=UTC))  # 23:59 in India
    await ledger.charge("alice", 5, ref="j1")
    clock.set(datetime(2026, 3, 1, 18, 30, tzinfo=UTC))  # midnight in India
    await ledger.charge("alice", 5, ref="j2")
    with pytest.raises(DailyCapExceeded) as err:
        await ledger.charge("alice", 1, ref="j3")
    assert err.value.resets_at == "2026-03-02T18:30:00+00:00"


def test_day_window_across_dst_in_a_zone() -> None:
    ny = DayBoundary(ZoneInfo("America/New_York"))
    start, end = ny.window(datetime(2026, 3, 8, 12, 0, tzinfo=UTC))  # spring forward
    assert end - start == timedelta(hours=23)
    start, end = ny.window(datetime(2026, 11, 1, 12, 0, tzinfo=UTC))  # fall back
    assert end - start == timedelta(hours=25)


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="negative"):
        LedgerPolicy(daily_cap=-1)
    with pytest.raises(TypeError):
        LedgerPolicy(daily_cap=1.5)  # type: ignore[arg-type]


async def test_two_phase_reserve_capture_release() -> None:
    ledger, _ = make(cap=10)
    await ledger.grant("alice", 20)
    r = await ledger.reserve("alice", 6, ref="j1")
    assert (r.kind, r.amount) == (EntryKind.RESERVE, -6)
    assert await ledger.balance("alice") == 14
    assert (await ledger.usage("alice")).used == 6
    cap = await ledger.capture("j1")
    assert (cap.kind, cap.amount) == (EntryKind.CAPTURE, 0)
    assert await ledger.capture("j1") == cap
    with pytest.raises(LedgerConflict) as conflict:
        await ledger.release("j1")
    assert conflict.value.reason == "already_captured"
    await ledger.reserve("alice", 4, ref="j2")
    with pytest.raises(DailyCapExceeded):
        await ledger.reserve("alice", 1, ref="j3")
    rel = await ledger.release("j2")
    assert (rel.kind, rel.amount) == (EntryKind.RELEASE, 4)
    assert await ledger.release("j2") == rel
    with pytest.raises(LedgerConflict):
        await ledger.capture("j2")
    assert await ledger.balance("alice") == 14
    assert (await ledger.usage("alice")).used == 6


async def test_two_phase_errors() -> None:
    ledger, _ = make()
    await ledger.grant("alice", 20)
    with pytest.raises(NoReservation):
        await ledger.capture("nothing")
    with pytest.raises(NoReservation):
        await ledger.release("nothing")
    await ledger.charge("alice", 1, ref="charged")
    with pytest.raises(LedgerConflict):
        await ledger.reserve("alice", 1, ref="charged")
    await ledger.reserve("alice", 1, ref="reserved")
    with pytest.raises(LedgerConflict):
        await ledger.charge("alice", 1, ref="reserved")
    with pytest.raises(RefundWithoutCharge):
        await ledger.refund("reserved")
    with pytest.raises(InsufficientCredits):
        await ledger.reserve("alice", 100, ref="too-much")


async def test_use_after_aclose() -> None:
    ledger, _ = make()
    await ledger.grant("alice", 1)
    await ledger.store.aclose()
    with pytest.raises(StoreClosed):
        await ledger.balance("alice")
    with pytest.raises(StoreClosed):
        await ledger.charge("alice", 1, ref="j")


async def test_ops_share_the_callers_transaction() -> None:
    store = MemoryStore()
    ledger = Ledger(store, clock=FakeClock(START))
    await ledger.grant("alice", 5)

    class Crash(Exception):
        pass

    async def charge_then_crash() -> None:
        async with store.transaction() as tx:
            await charge(tx, "alice", 5, ref="job-1", now=START)
            raise Crash  # e.g. the job update failed: the charge must go too

    with pytest.raises(Crash):
        await charge_then_crash()
    assert await ledger.balance("alice") == 5
    with pytest.raises(RefundWithoutCharge):
        await ledger.refund("job-1")


async def test_statement_pages_through_equal_timestamps() -> None:
    ledger, _ = make()  # the clock never moves: every entry has the same timestamp
    for i in range(5):
        await ledger.grant("alice", 1, external_id=f"p{i}")
    seen: list[str] = []
    page = await ledger.statement("alice", limit=2)
    while page.entries:
        seen += [e.id for e in page.entries]
        last = page.entries[-1]
        page = await ledger.statement("alice", limit=2, before=last.created_at, before_id=last.id)
    assert sorted(seen) == [f"e{i}" for i in range(5)]
    assert len(seen) == 5


@pytest.mark.parametrize("ref", ["", "r" * 256])
async def test_bad_references_are_refused(ref: str) -> None:
    ledger, _ = make()
    await ledger.grant("alice", 10)
    with pytest.raises(InvalidReference) as err:
        await ledger.charge("alice", 1, ref=ref)
    assert err.value.what == "ref"
    with pytest.raises(InvalidReference):
        await ledger.grant("alice", 1, external_id=ref)
    with pytest.raises(InvalidReference):
        await ledger.refund(ref)
    with pytest.raises(InvalidReference):
        await ledger.adjust("alice", 1, ref=ref)
    assert await ledger.balance("alice") == 10
