"""The ledger, run as a hypothesis state machine on the host's store beside the reference.

Every step runs the same ledger call on the host's store and on a
:class:`~chatsvg_core.storage.MemoryStore`, and predicts it with a plain
Python model of the rules; the three must agree (same entry or same error
type). After every step the invariants of ARCHITECTURE.md are checked on the
host's store: balance = sum of entries, never negative, at most one charge
and one refund per job, a refund only after a charge and for its amount, a
reservation settled at most once, and the daily cap never exceeded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, cast
from zoneinfo import ZoneInfo

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from chatsvg_core import ledger as L
from chatsvg_core.errors import ChatSVGError
from chatsvg_core.storage import EntryKind, LedgerEntry, Store, StoreTransaction
from chatsvg_core.storage._spend import read_spend_state, read_spend_state_reference
from chatsvg_core.testing.conformance._base import ConformanceBase, HostMachine

__all__ = ["LedgerConformance", "check_ledger_invariants"]

OWNERS = ("alice", "bob", "carol")
GHOST = "ghost"
JOBS = tuple(f"job-{i}" for i in range(4))
EXTERNAL = (None, "pay-0", "pay-1", "pay-2")
ADJ_REFS = (None, "adj-0", "adj-1")
ZONES: tuple[tzinfo, ...] = (
    UTC,
    timezone(timedelta(hours=5, minutes=30)),
    timezone(timedelta(hours=-8)),
    ZoneInfo("America/New_York"),
)

Outcome = tuple[Any, ...]
"""``("ok", owner, kind, amount, ref, created_at)`` or ``("error", ExceptionClassName)``."""

_REVERSAL = {EntryKind.CHARGE: EntryKind.REFUND, EntryKind.RESERVE: EntryKind.RELEASE}


def _ok(e: LedgerEntry) -> Outcome:
    return ("ok", e.owner, e.kind, e.amount, e.ref, e.created_at)


def _err(name: str) -> Outcome:
    return ("error", name)


async def _outcome(
    store: Store, op: Callable[[StoreTransaction], Awaitable[LedgerEntry]]
) -> Outcome:
    try:
        async with store.transaction() as tx:
            return _ok(await op(tx))
    except ChatSVGError as exc:
        return _err(type(exc).__name__)


async def check_ledger_invariants(
    tx: StoreTransaction, owners: tuple[str, ...], *, page: int = 10_000
) -> list[LedgerEntry]:
    """Assert the ledger invariants over ``owners``' entries; return all their entries.

    Usable by hosts in their own tests: balance = sum of entries and never
    negative; at most one entry per (kind, ref); every refund matches a charge
    of the same owner and the opposite amount; every release or capture
    follows a reservation; no reservation both captured and released.
    """
    everything: list[LedgerEntry] = []
    for owner in owners:
        entries = list(await tx.entries(owner, limit=page))
        total = sum(e.amount for e in entries)
        stored = await tx.balance(owner)
        assert stored == total, f"{owner}: balance {stored} != sum of entries {total}"
        assert stored >= 0, f"{owner}: negative balance {stored}"
        everything += entries
    keyed = Counter((e.kind, e.ref) for e in everything if e.ref is not None)
    dupes = [k for k, n in keyed.items() if n > 1]
    assert not dupes, f"more than one entry per (kind, ref): {dupes}"
    by_key: dict[tuple[EntryKind, str | None], LedgerEntry] = {
        (e.kind, e.ref): e for e in everything if e.ref is not None
    }
    for e in everything:
        if e.kind is EntryKind.REFUND:
            c = by_key.get((EntryKind.CHARGE, e.ref))
            assert c is not None, f"refund of {e.ref} without a charge"
            assert (c.owner, -c.amount) == (e.owner, e.amount), f"refund of {e.ref} != its charge"
            assert c.created_at <= e.created_at, f"refund of {e.ref} before its charge"
        if e.kind in (EntryKind.CAPTURE, EntryKind.RELEASE):
            r = by_key.get((EntryKind.RESERVE, e.ref))
            assert r is not None, f"{e.kind.value} of {e.ref} without a reservation"
            want = 0 if e.kind is EntryKind.CAPTURE else -r.amount
            assert (r.owner, want) == (e.owner, e.amount), f"{e.kind.value} of {e.ref} is wrong"
        if e.kind is EntryKind.CAPTURE:
            assert (EntryKind.RELEASE, e.ref) not in by_key, f"{e.ref} captured and released"
        if e.kind in (EntryKind.CHARGE, EntryKind.RESERVE):
            assert e.amount < 0, f"{e.kind.value} {e.ref} has a non-negative amount"
        if e.kind in (EntryKind.GRANT, EntryKind.REFUND, EntryKind.RELEASE):
            assert e.amount > 0, f"{e.kind.value} {e.ref} has a non-positive amount"
    return everything


@dataclass
class _Model:
    """The ledger's rules in their plainest form: the oracle for each step."""

    accounts: set[str] = field(default_factory=set)
    entries: list[Outcome] = field(default_factory=list)
    keyed: dict[tuple[EntryKind, str], Outcome] = field(default_factory=dict)

    def balance(self, owner: str) -> int:
        return sum(e[3] for e in self.entries if e[1] == owner)

    def usage(self, owner: str, start: datetime, end: datetime) -> int:
        spent = 0
        for _, who, kind, amount, ref, at in self.entries:
            rev = _REVERSAL.get(kind)
            live = rev is not None and (rev, ref) not in self.keyed
            if who == owner and live and start <= at < end:
                spent -= amount
        return spent

    def add(
        self, owner: str, kind: EntryKind, amount: int, ref: str | None, at: datetime
    ) -> Outcome:
        e: Outcome = ("ok", owner, kind, amount, ref, at)
        self.entries.append(e)
        if ref is not None:
            self.keyed[(kind, ref)] = e
        return e

    def replay(self, kind: EntryKind, ref: str, owner: str, amount: int) -> Outcome | None:
        seen = self.keyed.get((kind, ref))
        if seen is None:
            return None
        return seen if (seen[1], seen[3]) == (owner, amount) else _err("LedgerConflict")


class LedgerConformance(ConformanceBase):
    """The ledger's rules hold on the host's store, step by step and under concurrency."""

    def test_spend_read_matches_the_fine_primitives(self) -> None:
        """``read_spend_state`` (your ``spend_state``, if any) equals the reference read."""
        t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        day = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))

        async def body(store: Store) -> None:
            async with store.transaction() as tx:
                await L.grant(tx, "alice", 100, now=t0 - timedelta(days=1))
                await L.charge(tx, "alice", 7, ref="old", now=t0 - timedelta(days=1))
                await L.charge(tx, "alice", 5, ref="c1", now=t0)
                await L.charge(tx, "alice", 3, ref="c2", now=t0)
                await L.refund(tx, "c2", now=t0)
                await L.reserve(tx, "alice", 4, ref="r1", now=t0)
            for owner in ("alice", "nobody"):
                for kind, other in (
                    (EntryKind.CHARGE, EntryKind.RESERVE),
                    (EntryKind.RESERVE, EntryKind.CHARGE),
                ):
                    for ref in ("old", "c1", "c2", "r1", "new"):
                        for window in (None, day):
                            async with store.transaction() as tx:
                                got = await read_spend_state(tx, owner, kind, other, ref, window)
                            async with store.transaction() as tx:
                                want = await read_spend_state_reference(
                                    tx, owner, kind, other, ref, window
                                )
                            assert got == want, (owner, kind, ref, window, got, want)
            async with store.transaction() as tx:
                state = await read_spend_state(
                    tx, "alice", EntryKind.CHARGE, EntryKind.RESERVE, "c1", day
                )
            assert state.exists and state.seen is not None
            assert (state.seen.amount, state.balance, state.used) == (-5, 84, 9)

        self.run(body)

    def test_ledger_state_machine(self) -> None:
        # hypothesis takes any factory here, though newer stubs name only the class.
        run_state_machine_as_test(  # type: ignore[no-untyped-call, unused-ignore]
            cast("type[RuleBasedStateMachine]", lambda: _machine(self)),
            settings=self.state_machine_settings(),
        )


def _machine(suite: ConformanceBase) -> RuleBasedStateMachine:
    return _LedgerMachine(suite)


class _LedgerMachine(HostMachine):
    def __init__(self, suite: ConformanceBase) -> None:
        super().__init__(suite)
        self.model = _Model()
        self.cap: int | None = None
        self.day = L.DayBoundary()

    def _step(
        self, op: Callable[[StoreTransaction], Awaitable[LedgerEntry]], expected: Outcome
    ) -> Outcome:
        host = self.loop.run_until_complete(_outcome(self.host, op))
        ref = self.loop.run_until_complete(_outcome(self.reference, op))
        assert ref == expected, f"reference store: {ref} but the rules say {expected}"
        assert host == ref, f"host store: {host} but the reference store: {ref}"
        return host

    # --- setup and time -----------------------------------------------------------

    @initialize(
        zone=st.sampled_from(ZONES),
        cap=st.integers(1, 40) | st.none(),
        funds=st.lists(st.integers(10, 80), min_size=len(OWNERS), max_size=len(OWNERS)),
    )
    def start(self, zone: tzinfo, cap: int | None, funds: list[int]) -> None:
        # Funded accounts from the first step, so charges, refunds and the
        # cap are reached within few steps.
        self.day = L.DayBoundary(zone)
        self.cap = cap
        for owner, amount in zip(OWNERS, funds, strict=True):
            self.grant(owner, amount, None)

    @rule(seconds=st.sampled_from([0, 1, 3_600, 6 * 3_600, 86_400, 2 * 86_400 + 7]))
    def advance(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(cap=st.none() | st.integers(0, 60))
    def set_cap(self, cap: int | None) -> None:
        self.cap = cap

    # --- operations ---------------------------------------------------------------

    @rule(owner=st.sampled_from(OWNERS), amount=st.integers(1, 50), ext=st.sampled_from(EXTERNAL))
    def grant(self, owner: str, amount: int, ext: str | None) -> None:
        m = self.model
        seen = m.keyed.get((EntryKind.GRANT, ext)) if ext else None
        if seen is not None and amount % 2 == 0:
            owner, amount = seen[1], seen[3]  # mostly an exact replay, sometimes a mismatch
        expected = m.replay(EntryKind.GRANT, ext, owner, amount) if ext else None
        if expected is None:
            m.accounts.add(owner)
            expected = m.add(owner, EntryKind.GRANT, amount, ext, self.now)
        now = self.now
        self._step(lambda tx: L.grant(tx, owner, amount, now=now, external_id=ext), expected)

    def _spend(self, kind: EntryKind, owner: str, amount: int, job: str) -> None:
        m, now, cap, day = self.model, self.now, self.cap, self.day
        other = EntryKind.RESERVE if kind is EntryKind.CHARGE else EntryKind.CHARGE
        expected: Outcome | None
        written = False
        expected = m.replay(kind, job, owner, -amount)
        if expected is None:
            start, end = day.window(now)
            if owner not in m.accounts:
                expected = _err("InsufficientCredits")  # no account: a balance of 0
            elif (other, job) in m.keyed:
                expected = _err("LedgerConflict")
            elif m.balance(owner) < amount:
                expected = _err("InsufficientCredits")
            elif cap is not None and m.usage(owner, start, end) + amount > cap:
                expected = _err("DailyCapExceeded")
            else:
                expected = m.add(owner, kind, -amount, job, now)
                written = True
        fn = L.charge if kind is EntryKind.CHARGE else L.reserve
        self._step(
            lambda tx: fn(tx, owner, amount, ref=job, now=now, daily_cap=cap, day=day), expected
        )
        if written and cap is not None:
            # A new spend under a cap leaves the day within it. (A replay may
            # return an entry from before the cap was lowered; that is fine.)
            start, end = day.window(now)
            used = self.loop.run_until_complete(self._usage(owner, start, end))
            assert used <= cap, f"daily cap {cap} exceeded: {used}"

    async def _usage(self, owner: str, start: datetime, end: datetime) -> int:
        async with self.host.transaction() as tx:
            return await tx.usage(owner, since=start, until=end)

    @rule(
        owner=st.sampled_from((*OWNERS, GHOST)),
        amount=st.integers(1, 30),
        job=st.sampled_from(JOBS),
    )
    def charge(self, owner: str, amount: int, job: str) -> None:
        self._spend(EntryKind.CHARGE, owner, amount, job)

    @rule(job=st.sampled_from(JOBS), kind=st.sampled_from([EntryKind.CHARGE, EntryKind.RESERVE]))
    def replay_exactly(self, job: str, kind: EntryKind) -> None:
        # A retried worker repeats its call with the same values: it must get
        # the original entry back and change nothing.
        seen = self.model.keyed.get((kind, job))
        if seen is not None:
            self._spend(kind, seen[1], -seen[3], job)

    @rule(
        owner=st.sampled_from(OWNERS),
        job=st.sampled_from(JOBS),
        delta=st.integers(-1, 1),
        edge=st.sampled_from(["balance", "cap"]),
        two_phase=st.booleans(),
    )
    def spend_at_the_edge(
        self, owner: str, job: str, delta: int, edge: str, two_phase: bool
    ) -> None:
        # Random amounts rarely land exactly on "balance" or "room left under
        # the cap"; off-by-one bugs live there, so aim at them on purpose.
        if edge == "cap" and self.cap is not None:
            start, end = self.day.window(self.now)
            target = self.cap - self.model.usage(owner, start, end)
        else:
            target = self.model.balance(owner)
        kind = EntryKind.RESERVE if two_phase else EntryKind.CHARGE
        self._spend(kind, owner, max(target + delta, 1), job)

    @rule(owner=st.sampled_from(OWNERS), amount=st.integers(1, 30), job=st.sampled_from(JOBS))
    def reserve(self, owner: str, amount: int, job: str) -> None:
        self._spend(EntryKind.RESERVE, owner, amount, job)

    @rule(job=st.sampled_from((*JOBS, "never-charged")))
    def refund(self, job: str) -> None:
        m, now = self.model, self.now
        charged = m.keyed.get((EntryKind.CHARGE, job))
        if charged is None:
            expected = _err("RefundWithoutCharge")
        else:
            seen = m.keyed.get((EntryKind.REFUND, job))
            expected = seen or m.add(charged[1], EntryKind.REFUND, -charged[3], job, now)
        self._step(lambda tx: L.refund(tx, job, now=now), expected)

    @rule(job=st.sampled_from(JOBS), delta=st.integers(-1, 1), two_phase=st.booleans())
    def give_back_and_spend_again(self, job: str, delta: int, two_phase: bool) -> None:
        # Refunds and releases give room back under the cap on the charge's day;
        # spend that room at once, while still on the same day, to test it.
        kind = EntryKind.RESERVE if two_phase else EntryKind.CHARGE
        taken = self.model.keyed.get((kind, job))
        if taken is None:
            return
        if two_phase:
            self.settle(job, capture=False)
        else:
            self.refund(job)
        owner = taken[1]
        free = [j for j in JOBS if not any((k, j) in self.model.keyed for k in _REVERSAL)]
        if free:
            self.spend_at_the_edge(owner, free[0], delta, "cap", two_phase)

    @rule(job=st.sampled_from(JOBS), capture=st.booleans())
    def settle(self, job: str, capture: bool) -> None:
        m, now = self.model, self.now
        kind, other = (
            (EntryKind.CAPTURE, EntryKind.RELEASE)
            if capture
            else (EntryKind.RELEASE, EntryKind.CAPTURE)
        )
        held = m.keyed.get((EntryKind.RESERVE, job))
        if held is None:
            expected = _err("NoReservation")
        elif (kind, job) in m.keyed:
            expected = m.keyed[(kind, job)]
        elif (other, job) in m.keyed:
            expected = _err("LedgerConflict")
        else:
            expected = m.add(held[1], kind, 0 if capture else -held[3], job, now)
        fn = L.capture if capture else L.release
        self._step(lambda tx: fn(tx, job, now=now), expected)

    @rule(
        owner=st.sampled_from((*OWNERS, GHOST)),
        amount=st.integers(-30, 30).filter(bool),
        ref=st.sampled_from(ADJ_REFS),
    )
    def adjust(self, owner: str, amount: int, ref: str | None) -> None:
        m, now = self.model, self.now
        expected: Outcome | None
        expected = m.replay(EntryKind.ADJUSTMENT, ref, owner, amount) if ref else None
        if expected is None:
            if m.balance(owner) + amount < 0:
                expected = _err("InsufficientCredits")
            else:
                m.accounts.add(owner)  # a positive correction opens the account
                expected = m.add(owner, EntryKind.ADJUSTMENT, amount, ref, now)
        self._step(lambda tx: L.adjust(tx, owner, amount, now=now, ref=ref), expected)

    @rule(
        owner=st.sampled_from(OWNERS),
        amount=st.integers(-5, 0),
        what=st.sampled_from(["grant", "charge", "reserve"]),
    )
    def bad_amount(self, owner: str, amount: int, what: str) -> None:
        now = self.now
        op: Callable[[StoreTransaction], Awaitable[LedgerEntry]]
        if what == "grant":
            op = lambda tx: L.grant(tx, owner, amount, now=now)  # noqa: E731
        elif what == "charge":
            op = lambda tx: L.charge(tx, owner, amount, ref="bad", now=now)  # noqa: E731
        else:
            op = lambda tx: L.reserve(tx, owner, amount, ref="bad", now=now)  # noqa: E731
        self._step(op, _err("InvalidAmount"))

    # --- invariants ---------------------------------------------------------------

    @invariant()
    def ledger_invariants_hold(self) -> None:
        async def check() -> None:
            async with self.host.transaction() as tx:
                await check_ledger_invariants(tx, (*OWNERS, GHOST))
                for owner in (*OWNERS, GHOST):
                    assert await tx.balance(owner) == self.model.balance(owner)
                    assert await tx.lock_account(owner) == (owner in self.model.accounts)

        self.loop.run_until_complete(check())
