"""``charge_for_job`` (the engine's claim) is ``charge``, also saying whether it wrote.

The engine's entry point folds ``charge``'s argument checks into one test of
values they would return unchanged and shares its decisions (one
``_spend_checked``). These properties run both on twin stores, odd arguments
included, and require the same entry or the same error, the same ledger
afterwards, and ``written`` true exactly when the call added the entry.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from chatsvg_core.ledger import DayBoundary, charge, grant
from chatsvg_core.ledger._ops import charge_for_job, reserve
from chatsvg_core.storage import MemoryStore

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class _Str(str):
    pass


class _Int(int):
    pass


class _Moment(datetime):
    pass


_OWNERS = st.sampled_from(
    [
        "alice",
        "bob",
        "",
        "a" * 255,
        "a" * 256,
        "caf\u00e9",
        "tab\there",
        "nul\x00",
        _Str("alice"),
        7,
    ]
)
_AMOUNTS = st.one_of(
    st.integers(-2, 12),
    st.sampled_from([2**62, 2**62 + 1, True, 1.0, "3", _Int(2), None]),
)
_CAPS = st.one_of(st.none(), st.integers(-1, 30), st.sampled_from([True, 2.0, _Int(5)]))
_NOWS = st.sampled_from(
    [
        NOW,
        NOW + timedelta(hours=13),  # the next UTC day
        NOW.astimezone(timezone(timedelta(hours=5))),
        _Moment(2026, 3, 1, 12, 30, tzinfo=UTC),
        datetime(2026, 3, 1, 12, 0),  # naive
        "2026-03-01",
    ]
)
_REFS = st.sampled_from(["job-1", "job-2", "", "r" * 255, "r" * 256, _Str("job-1"), 5])
_DAYS = st.sampled_from([DayBoundary(), DayBoundary(timezone(timedelta(hours=-8)))])


def _ids() -> Any:
    count = iter(range(10**6))
    return lambda: f"e-{next(count)}"


async def _twin(balance: int, reserved: bool) -> MemoryStore:
    store = MemoryStore()
    async with store.transaction() as tx:
        await grant(tx, "alice", balance, now=NOW - timedelta(days=1), new_id=lambda: "g-1")
        await grant(tx, "bob", 3, now=NOW - timedelta(days=1), new_id=lambda: "g-2")
        if reserved:
            await reserve(tx, "alice", 1, ref="job-2", now=NOW, new_id=lambda: "r-1")
    return store


async def _state(store: MemoryStore) -> Any:
    async with store.transaction() as tx:
        return (
            await tx.entries("alice", limit=100),
            await tx.entries("bob", limit=100),
            await tx.balance("alice"),
        )


async def _run(call: Any, store: MemoryStore, calls: list[dict[str, Any]]) -> list[Any]:
    new_id = _ids()
    outcomes: list[Any] = []
    for args in calls:
        try:
            async with store.transaction() as tx:
                outcomes.append(await call(tx, new_id=new_id, **args))
        except Exception as exc:  # the same error class and message, both sides
            outcomes.append((type(exc), str(exc)))
    return outcomes


async def _reference(tx: Any, *, owner: Any, amount: Any, **args: Any) -> Any:
    return await charge(tx, owner, amount, **args)


_CALL = st.fixed_dictionaries(
    {
        "owner": _OWNERS,
        "amount": _AMOUNTS,
        "ref": _REFS,
        "now": _NOWS,
        "daily_cap": _CAPS,
        "day": _DAYS,
    }
)


@given(st.integers(1, 20), st.booleans(), st.lists(_CALL, min_size=1, max_size=4))
@settings(max_examples=300, deadline=None)
@example(10, False, [{"owner": "alice", "amount": 2, "ref": "job-1", "now": NOW, "daily_cap": 5,
                      "day": DayBoundary()}] * 2)  # fmt: skip
@example(10, True, [{"owner": "alice", "amount": 2, "ref": "job-2", "now": NOW, "daily_cap": None,
                     "day": DayBoundary()}])  # fmt: skip
@example(1, False, [{"owner": "alice", "amount": 2, "ref": "job-1", "now": NOW, "daily_cap": None,
                     "day": DayBoundary()}])  # fmt: skip
def test_charge_for_job_is_charge_and_says_whether_it_wrote(
    balance: int, reserved: bool, calls: list[dict[str, Any]]
) -> None:
    async def count(store: MemoryStore) -> int:
        alice, bob, _ = await _state(store)
        return len(alice) + len(bob)

    async def body() -> None:
        ref_store, fast_store = await _twin(balance, reserved), await _twin(balance, reserved)
        want = await _run(_reference, ref_store, calls)
        new_id = _ids()
        for args, expected in zip(calls, want, strict=True):
            before = await count(fast_store)
            outcome: Any
            try:
                async with fast_store.transaction() as tx:
                    outcome = await charge_for_job(tx, new_id=new_id, **args)
            except Exception as exc:
                outcome = (type(exc), str(exc))
            if isinstance(expected, tuple):  # the same error class and message
                assert outcome == expected
                continue
            entry, written = outcome
            assert entry == expected
            assert written == (await count(fast_store) > before)
        assert await _state(fast_store) == await _state(ref_store)

    asyncio.run(body())
