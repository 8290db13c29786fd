"""How the ledger uses its store, as properties over random operation sequences.

The module docstring of ``ledger/_ops.py`` states the rules a single-process
store cannot show by its answers alone: every entry is written while its
owner's account is locked; the checks all run before the one ``insert_entry``
(so a refusal attempts no write); a replay is answered by a read (the store's
unique (kind, ref) index is the second layer, for races only). A recording
transaction checks each of them call by call. Each was a surviving mutant of
``ledger/_ops.py`` (docs/mutation.md), such as a capture or a refund that
locked no account, which only a multi-process PostgreSQL race can otherwise
show.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from chatsvg_core.errors import LedgerError
from chatsvg_core.ledger import adjust, capture, charge, grant, refund, release, reserve
from chatsvg_core.storage import LedgerEntry, MemoryStore, StoreTransaction
from chatsvg_core.testing import LedgerOperation, ledger_operations

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
OWNERS = st.sampled_from(["a", "b", "c"])


class _Recorder:
    """A transaction that notes the account locks taken and the entries it was asked to write."""

    def __init__(self, tx: StoreTransaction) -> None:
        self._tx = tx
        self.locked: set[str] = set()
        self.created: list[str] = []
        self.inserts: list[tuple[LedgerEntry, frozenset[str]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    async def lock_account(self, owner: str, *, create: bool = False) -> bool:
        held = await self._tx.lock_account(owner, create=create)
        if held:
            self.locked.add(owner)
        if create:
            self.created.append(owner)
        return held

    async def insert_entry(self, entry: LedgerEntry) -> LedgerEntry:
        self.inserts.append((entry, frozenset(self.locked)))
        return await self._tx.insert_entry(entry)


async def _apply(tx: Any, op: LedgerOperation, memo: str | None, cap: int) -> LedgerEntry:
    if op.action == "grant":
        return await grant(tx, op.owner, op.amount, now=NOW, external_id=op.ref, memo=memo)
    if op.action in ("charge", "reserve"):
        spend = charge if op.action == "charge" else reserve
        return await spend(tx, op.owner, op.amount, ref=op.ref, now=NOW, memo=memo, daily_cap=cap)
    if op.action == "adjust":
        return await adjust(tx, op.owner, op.amount, now=NOW, ref=op.ref, memo=memo)
    settle = {"refund": refund, "capture": capture, "release": release}[op.action]
    return await settle(tx, op.ref, now=NOW, memo=memo)


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            ledger_operations(OWNERS, refs=3, max_amount=20),
            st.none() | st.text(max_size=3),
            st.booleans(),
        ),
        max_size=30,
    ),
    cap=st.integers(0, 200),
)
def test_each_operation_locks_checks_then_writes_once_and_replays_by_reading(
    steps: list[tuple[LedgerOperation, str | None, bool]], cap: int
) -> None:
    async def main() -> None:
        store = MemoryStore()
        async with store.transaction() as tx:  # so that most spending succeeds
            for owner in ("a", "b", "c"):
                await grant(tx, owner, 1000, now=NOW)
        written: set[str] = set()
        for op, memo, twice in steps:
            for _ in range(2 if twice else 1):
                try:
                    async with store.transaction() as tx:
                        rec = _Recorder(tx)
                        entry: LedgerEntry | None = await _apply(rec, op, memo, cap)
                except LedgerError:
                    entry = None
                assert len(rec.inserts) <= 1, "one operation writes at most one entry"
                if entry is None:
                    assert rec.inserts == [], "a refusal attempts no write"
                    continue
                if entry.id in written:
                    assert rec.inserts == [], f"a replayed {op.action} attempts a write"
                    continue
                assert len(rec.inserts) == 1
                wanted, locked = rec.inserts[0]
                assert wanted == entry
                assert entry.owner in locked, f"{op.action} wrote without the owner's lock"
                assert (entry.memo, entry.created_at) == (memo, NOW)
                written.add(entry.id)

    asyncio.run(main())


def test_a_replayed_grant_with_another_owner_opens_no_account() -> None:
    # The replay is answered before any lock: the mismatch is refused without
    # creating an account for the wrong owner on its way to the error.
    async def main() -> None:
        store = MemoryStore()
        async with store.transaction() as tx:
            await grant(tx, "alice", 5, now=NOW, external_id="pay-1")
        async with store.transaction() as tx:
            rec = _Recorder(tx)
            try:
                await grant(rec, "bob", 5, now=NOW, external_id="pay-1")  # type: ignore[arg-type]
            except LedgerError:
                pass
            else:
                raise AssertionError("a replay with another owner must be refused")
            assert rec.created == []
            assert await tx.lock_account("bob") is False

    asyncio.run(main())


def test_every_operation_once_then_replayed() -> None:
    # The same rules along one fixed path through every operation, so that none
    # depends on what the generator happens to draw.
    path = [
        LedgerOperation("grant", "a", 50, "pay-1"),
        LedgerOperation("charge", "a", 5, "job-1"),
        LedgerOperation("refund", ref="job-1"),
        LedgerOperation("reserve", "a", 7, "job-2"),
        LedgerOperation("capture", ref="job-2"),
        LedgerOperation("reserve", "a", 3, "job-3"),
        LedgerOperation("release", ref="job-3"),
        LedgerOperation("adjust", "a", -4, "adj-1"),
        LedgerOperation("adjust", "b", 2, "adj-2"),
    ]

    async def main() -> None:
        store = MemoryStore()
        for op in path:
            memo = f"memo of {op.action}"
            async with store.transaction() as tx:
                rec = _Recorder(tx)
                entry = await _apply(rec, op, memo, 100)
            ((wanted, locked),) = rec.inserts
            assert (wanted, entry.memo, entry.created_at) == (entry, memo, NOW), op
            assert entry.owner in locked, f"{op.action} wrote without the owner's lock"
            async with store.transaction() as tx:
                rec = _Recorder(tx)
                assert await _apply(rec, op, "another memo", 100) == entry
            assert rec.inserts == [], f"a replayed {op.action} attempts a write"

    asyncio.run(main())
