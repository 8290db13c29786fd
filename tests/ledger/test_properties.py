"""Property tests of the ledger over the reference store, with the shipped strategies."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from chatsvg_core.errors import InvalidAmount, LedgerError
from chatsvg_core.ledger import DayBoundary, charge, grant
from chatsvg_core.storage import LedgerEntry, MemoryStore
from chatsvg_core.testing import (
    LedgerOperation,
    apply_ledger_operation,
    bad_amounts,
    ledger_operations,
)
from chatsvg_core.testing.conformance import check_ledger_invariants

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
OWNERS = ("owner-0", "owner-1", "owner-2")


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(ledger_operations(), max_size=40),
    cap=st.none() | st.integers(0, 80),
    twice=st.booleans(),
)
def test_any_operation_sequence_keeps_the_invariants_and_replays_change_nothing(
    ops: list[LedgerOperation], cap: int | None, twice: bool
) -> None:
    async def main() -> None:
        store = MemoryStore()
        start, end = DayBoundary().window(NOW)
        for op in ops:
            results: list[LedgerEntry | str] = []
            for _ in range(2 if twice else 1):
                try:
                    async with store.transaction() as tx:
                        results.append(await apply_ledger_operation(tx, op, now=NOW, daily_cap=cap))
                except LedgerError as exc:
                    results.append(type(exc).__name__)
            if twice and op.ref is not None and isinstance(results[0], LedgerEntry):
                assert results[1] == results[0], "a repeated call returns the original entry"
        async with store.transaction() as tx:
            await check_ledger_invariants(tx, OWNERS)
            if cap is not None:
                for owner in OWNERS:
                    assert await tx.usage(owner, since=start, until=end) <= cap

    asyncio.run(main())


@settings(max_examples=60, deadline=None)
@given(bad=bad_amounts())
def test_bad_amounts_are_refused_and_write_nothing(bad: object) -> None:
    async def main() -> None:
        store = MemoryStore()
        async with store.transaction() as tx:
            await grant(tx, "owner-0", 10, now=NOW)
        for op in (
            lambda tx: grant(tx, "owner-0", bad, now=NOW),  # type: ignore[arg-type]
            lambda tx: charge(tx, "owner-0", bad, ref="j", now=NOW),  # type: ignore[arg-type]
        ):
            try:
                async with store.transaction() as tx:
                    await op(tx)
            except InvalidAmount:
                pass
            else:
                raise AssertionError(f"amount {bad!r} was accepted")
        async with store.transaction() as tx:
            assert await tx.balance("owner-0") == 10
            assert len(await tx.entries("owner-0")) == 1

    asyncio.run(main())


@settings(max_examples=40, deadline=None)
@given(
    offset_minutes=st.integers(-14 * 60, 14 * 60),
    at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
)
def test_day_window_contains_now_and_lasts_a_day(offset_minutes: int, at: datetime) -> None:
    from datetime import timezone

    day = DayBoundary(timezone(timedelta(minutes=offset_minutes)))
    start, end = day.window(at)
    assert start <= at < end
    assert end - start == timedelta(days=1)
    assert day.window(start) == (start, end)
    assert day.window(end)[0] == end


ZONES = [
    "America/New_York",
    "Europe/London",
    "America/Santiago",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "America/Havana",
]


@settings(max_examples=200, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
    ),
)
def test_day_window_in_zones_contains_now_and_tiles_time(zone: str, at: datetime) -> None:
    from zoneinfo import ZoneInfo

    day = DayBoundary(ZoneInfo(zone))
    start, end = day.window(at)
    assert start <= at < end
    assert timedelta(hours=22) <= end - start <= timedelta(hours=26)
    # Consecutive days meet exactly: no instant belongs to two days or none.
    assert day.window(end)[0] == end
    assert day.window(start - timedelta(microseconds=1))[1] == start


@given(
    st.lists(
        st.tuples(
            st.integers(-3 * 86_400_000_000, 3 * 86_400_000_000),
            st.sampled_from([0, 1, -1, 5.5, -9.5, 14, -12]),
        ),
        min_size=1,
        max_size=30,
    )
)
@example([(0, 0), (1, 0), (-86_399_999_999, 0)])  # the day's last microsecond, its end, its start
def test_the_remembered_day_window_is_the_computed_one(stamps: list[tuple[int, float]]) -> None:
    # DayBoundary.window remembers the last window per fixed offset; any
    # sequence of times (forwards, backwards, across days) gets what the
    # computation gives.
    from datetime import UTC, datetime, timedelta, timezone

    from chatsvg_core.ledger import DayBoundary

    base = datetime(2026, 3, 28, 23, 59, 59, 999_999, tzinfo=UTC)
    for micros, hours in stamps:
        day = DayBoundary(timezone(timedelta(hours=hours)) if hours else UTC)
        now = base + timedelta(microseconds=micros)
        assert day.window(now) == day._window(now)
        assert day.window(now)[0] <= now < day.window(now)[1]
