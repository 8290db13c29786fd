"""Schema 6's cap counter: a capped charge reads the account's stored usage, never a sum
of the owner's entries of the day, and the answer is still exactly ``USAGE``'s.

Random interleavings of grants, charges and reservations under daily caps (several
days, day boundaries at different offsets), refunds, captures and releases through
the ledger, entries written by hand in orders the ledger never makes (a refund
before its charge, a give-back under another owner), and spend reads of arbitrary
windows (which move the stored window). After every step, on every backend:

* ``usage`` and ``read_spend_state``'s ``used`` equal the usage computed here from
  the entries themselves (the protocol's definition), for windows on every side of
  the stored one;
* on the SQL backends, every stored counter equals the ``USAGE`` statement over its
  stored window, run by hand.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatsvg_core.errors import DailyCapExceeded, LedgerError
from chatsvg_core.ledger import DayBoundary, _ops
from chatsvg_core.storage import EntryKind, LedgerEntry, MemoryStore, Store
from chatsvg_core.storage._spend import SpendState, read_spend_state
from chatsvg_core.storage._sql import USAGE
from chatsvg_core.storage.sqlite import SQLiteStore

from ._sqlhelpers import drop_schema, emptied_postgres, emptied_sqlite, new_schema_name

T0 = datetime(2026, 3, 1, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OWNERS = ("ann", "bob")
BOUNDARIES = (
    DayBoundary(),
    DayBoundary(timezone(timedelta(hours=5, minutes=30))),
    DayBoundary(timezone(timedelta(hours=-8))),
)
C, R = EntryKind.CHARGE, EntryKind.RESERVE

_EDGES = sorted(
    {
        b.window(T0 + timedelta(days=d, hours=12))[i]
        for b in BOUNDARIES
        for d in range(3)
        for i in (0, 1)
    }
)
_when = st.one_of(
    st.integers(0, 3 * 24 * 4 - 1).map(lambda q: T0 + timedelta(minutes=15 * q)),
    st.tuples(st.sampled_from(_EDGES), st.sampled_from((-1, 0))).map(
        lambda e: e[0] + timedelta(microseconds=e[1])
    ),
)
"""Three days in quarter hours, and every boundary's midnights (and the instant before)."""
_owner = st.sampled_from(OWNERS)
_job = st.integers(0, 4).map(lambda i: f"job-{i}")
_cap = st.sampled_from((None, 12, 30, 1000))
_op = st.one_of(
    st.tuples(st.just("grant"), _owner, st.integers(1, 30), _when),
    st.tuples(
        st.just("spend"),
        st.sampled_from((C, R)),
        _owner,
        _job,
        st.integers(1, 9),
        _when,
        st.integers(0, len(BOUNDARIES) - 1),
        _cap,
    ),
    st.tuples(st.just("settle"), st.sampled_from(("refund", "release", "capture")), _job, _when),
    st.tuples(
        st.just("raw"),
        st.sampled_from((C, R, EntryKind.REFUND, EntryKind.RELEASE)),
        _owner,
        _job,
        st.integers(1, 9),
        _when,
    ),
    st.tuples(st.just("read"), _owner, _when, st.integers(0, len(BOUNDARIES) - 1)),
)


def model_usage(
    entries: Sequence[LedgerEntry], owner: str, since: datetime, until: datetime
) -> int:
    """The protocol's definition, from the entries themselves."""
    gone = {(e.kind, e.ref) for e in entries}
    back = {C: EntryKind.REFUND, R: EntryKind.RELEASE}
    return -sum(
        e.amount
        for e in entries
        if e.owner == owner
        and e.kind in back
        and since <= e.created_at < until
        and (e.ref is None or (back[e.kind], e.ref) not in gone)
    )


async def all_entries(store: Store) -> list[LedgerEntry]:
    async with store.transaction() as tx:
        found: list[LedgerEntry] = []
        for owner in OWNERS:
            found.extend(await tx.entries(owner, limit=10_000))
        return found


async def apply(store: Store, op: tuple[Any, ...], i: int) -> None:
    name = op[0]
    try:
        async with store.transaction() as tx:
            if name == "grant":
                await _ops.grant(tx, op[1], op[2], now=op[3], new_id=lambda: f"g{i}")
            elif name == "spend":
                _, kind, owner, job, amount, when, b, cap = op
                spend = _ops.charge if kind is C else _ops.reserve
                await spend(
                    tx,
                    owner,
                    amount,
                    ref=job,
                    now=when,
                    daily_cap=cap,
                    day=BOUNDARIES[b],
                    new_id=lambda: f"s{i}",
                )
            elif name == "settle":
                settle = {"refund": _ops.refund, "release": _ops.release, "capture": _ops.capture}
                await settle[op[1]](tx, op[2], now=op[3], new_id=lambda: f"t{i}")
            elif name == "raw":
                _, kind, owner, job, amount, when = op
                sign = -1 if kind in (C, R) else 1
                await tx.lock_account(owner, create=True)
                await tx.insert_entry(
                    LedgerEntry(
                        id=f"r{i}",
                        owner=owner,
                        kind=kind,
                        amount=sign * amount,
                        ref=job,
                        created_at=when,
                    )
                )
            else:
                _, owner, when, b = op
                window = BOUNDARIES[b].window(when)
                # A spend read of this window (stores it as the account's counter).
                await read_spend_state(tx, owner, C, R, f"probe-{i}", window)
    except LedgerError:
        pass  # refused (no credits, over the cap, a conflict): nothing written


def windows_around(entries: Sequence[LedgerEntry]) -> list[tuple[datetime, datetime]]:
    """Every boundary's day on each of the three days, and the day before and after."""
    found = []
    for b in BOUNDARIES:
        for day in range(-1, 4):
            found.append(b.window(T0 + timedelta(days=day, hours=12)))
    return found


class _RolledBack(Exception):
    pass


async def _spend_read_rolled_back(
    store: Store, owner: str, window: tuple[datetime, datetime]
) -> SpendState:
    """A spend read, rolled back: it may store its window, and the next step
    should meet the window the previous ones left."""
    try:
        async with store.transaction() as tx:
            state = await read_spend_state(tx, owner, C, R, "no-such-job", window)
            raise _RolledBack
    except _RolledBack:
        return state


Raw = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


async def check(store: Store, raw: Raw | None) -> None:
    entries = await all_entries(store)
    for owner in OWNERS:
        for since, until in windows_around(entries):
            want = model_usage(entries, owner, since, until)
            async with store.transaction() as tx:
                got = await tx.usage(owner, since=since, until=until)
            assert got == want, (owner, since, until)
            state = await _spend_read_rolled_back(store, owner, (since, until))
            assert state.used == want, (owner, since, until)
    if raw is None:
        return
    for owner, since, until, used in raw(
        "SELECT owner, cap_since, cap_until, cap_used FROM chatsvg_accounts "
        "WHERE cap_since IS NOT NULL",
        (),
    ):
        summed = raw(USAGE, (owner, since, until))[0][0]
        assert used == summed, (owner, since, until)
        assert used == model_usage(entries, owner, _decode(since), _decode(until))


def _decode(value: Any) -> datetime:
    if isinstance(value, int):
        return EPOCH + timedelta(microseconds=value)
    assert isinstance(value, datetime)
    return value.astimezone(UTC)


async def run_ops(store: Store, ops: list[tuple[Any, ...]], raw: Raw | None) -> None:
    start = [("grant", owner, 60, T0) for owner in OWNERS]
    for i, op in enumerate(start + ops):
        await apply(store, op, i)
        await check(store, raw)


_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_OPS = st.lists(_op, min_size=1, max_size=25)


@_SETTINGS
@given(ops=_OPS)
def test_memory_usage_equals_the_entries(ops: list[tuple[Any, ...]]) -> None:
    async def body() -> None:
        await run_ops(MemoryStore(), ops, None)

    anyio.run(body)


@pytest.fixture(scope="module")
def sqlite_path() -> Path:
    return Path(tempfile.mkdtemp()) / "cap.db"


@_SETTINGS
@given(ops=_OPS)
def test_sqlite_counter_equals_usage(sqlite_path: Path, ops: list[tuple[Any, ...]]) -> None:
    def raw(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with sqlite3.connect(sqlite_path) as conn:
            return conn.execute(sql, tuple(params)).fetchall()

    async def body() -> None:
        async with emptied_sqlite(sqlite_path, synchronous="normal") as store:
            await run_ops(store, ops, raw)

    anyio.run(body)


@pytest.fixture(scope="module")
def pg_schema(postgres_url: str) -> Any:
    schema = new_schema_name()
    yield schema
    drop_schema(postgres_url, schema)


@pytest.mark.postgres
@settings(_SETTINGS, max_examples=30)
@given(ops=_OPS)
def test_postgres_counter_equals_usage(
    postgres_url: str, pg_schema: str, ops: list[tuple[Any, ...]]
) -> None:
    import psycopg
    from psycopg import sql

    def raw(text: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(pg_schema)))
            return conn.execute(text.replace("?", "%s").encode(), tuple(params)).fetchall()

    async def body() -> None:
        async with emptied_postgres(postgres_url, pg_schema, max_size=1) as store:
            await run_ops(store, ops, raw)

    anyio.run(body)


# --- upgrade, and the statements a capped charge sends -------------------------------


@asynccontextmanager
async def _sqlite_store(path: Path) -> AsyncIterator[SQLiteStore]:
    store = await SQLiteStore.open(path)
    try:
        yield store
    finally:
        await store.aclose()


async def test_sqlite_version_5_database_upgrades_with_the_counter_unset(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    day = DayBoundary().window(T0)
    async with _sqlite_store(path) as store, store.transaction() as tx:
        await _ops.grant(tx, "ann", 100, now=T0)
        await _ops.charge(tx, "ann", 7, ref="j1", now=T0, daily_cap=50)
    # Back to version 5 as it shipped: no counter columns.
    with sqlite3.connect(path) as conn:
        for column in ("cap_since", "cap_until", "cap_used"):
            conn.execute(f"ALTER TABLE chatsvg_accounts DROP COLUMN {column}")
        conn.execute("DELETE FROM chatsvg_schema_version WHERE version >= 6")
    async with _sqlite_store(path) as store:
        with sqlite3.connect(path) as conn:
            assert conn.execute(
                "SELECT cap_since, cap_until, cap_used FROM chatsvg_accounts"
            ).fetchall() == [(None, None, None)]
        async with store.transaction() as tx:
            assert await tx.usage("ann", since=day[0], until=day[1]) == 7
            await _ops.charge(tx, "ann", 5, ref="j2", now=T0 + timedelta(hours=1), daily_cap=50)
        with sqlite3.connect(path) as conn:
            stored = conn.execute("SELECT cap_used FROM chatsvg_accounts").fetchall()
        assert stored == [(12,)]  # summed once at the first capped charge, then counted
        async with store.transaction() as tx:
            assert await tx.usage("ann", since=day[0], until=day[1]) == 12


async def test_sqlite_capped_charge_reads_no_entries_of_the_day(tmp_path: Path) -> None:
    """The statements of a capped charge do not grow with the owner's entries today."""
    path = tmp_path / "db.sqlite"
    async with _sqlite_store(path) as store:
        async with store.transaction() as tx:
            await _ops.grant(tx, "ann", 10**6, now=T0)
        seen: list[int] = []

        async def charge_counting(ref: str, when: datetime) -> int:
            steps = 0

            def count() -> int:
                nonlocal steps
                steps += 1
                return 0

            async with store.transaction() as tx:
                await tx._one("SELECT 1")  # begin before the handler is set
                tx._conn.set_progress_handler(count, 1)
                await _ops.charge(tx, "ann", 1, ref=ref, now=when, daily_cap=10**6)
                tx._conn.set_progress_handler(None, 1)
            return steps

        for i in range(400):
            steps = await charge_counting(f"j{i}", T0 + timedelta(seconds=i))
            if i in (5, 399):
                seen.append(steps)
        # The VM steps of the 6th and the 400th charge of the day: equal, give or
        # take an index level (USAGE's scan took some 30 steps per entry).
        assert seen[1] <= seen[0] + 40, seen


# --- orders the ledger never writes, by hand, on every backend ---------------------


@asynccontextmanager
async def _any_store(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if kind == "memory":
        yield MemoryStore()
    elif kind == "sqlite":
        async with emptied_sqlite(Path(tempfile.mkdtemp()) / "db.sqlite") as store:
            yield store
    else:
        url = request.getfixturevalue("postgres_url")
        schema = new_schema_name()
        try:
            async with emptied_postgres(url, schema, max_size=1) as store:
                yield store
        finally:
            drop_schema(url, schema)


ALL = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _entry(i: int, owner: str, kind: EntryKind, amount: int, ref: str) -> LedgerEntry:
    return LedgerEntry(
        id=f"x{i}",
        owner=owner,
        kind=kind,
        amount=amount,
        ref=ref,
        created_at=T0 + timedelta(hours=i),
    )


@pytest.mark.parametrize("kind", ALL)
async def test_a_give_back_written_before_its_spend_keeps_it_out(
    kind: str, request: pytest.FixtureRequest
) -> None:
    day = DayBoundary().window(T0)
    async with _any_store(kind, request) as store:
        async with store.transaction() as tx:
            await _ops.grant(tx, "ann", 100, now=T0)
            await _ops.charge(tx, "ann", 4, ref="j0", now=T0, daily_cap=50)  # stores the day
            await tx.insert_entry(_entry(1, "ann", EntryKind.REFUND, 5, "j1"))
            await tx.insert_entry(_entry(2, "ann", EntryKind.RELEASE, 6, "j2"))
            await tx.insert_entry(_entry(3, "ann", C, -5, "j1"))
            await tx.insert_entry(_entry(4, "ann", R, -6, "j2"))
        async with store.transaction() as tx:
            assert await tx.usage("ann", since=day[0], until=day[1]) == 4
            state = await read_spend_state(tx, "ann", C, R, "j9", day)
            assert state.used == 4


@pytest.mark.parametrize("kind", ALL)
async def test_a_give_back_under_another_owner_leaves_the_spenders_usage(
    kind: str, request: pytest.FixtureRequest
) -> None:
    day = DayBoundary().window(T0)
    async with _any_store(kind, request) as store:
        async with store.transaction() as tx:
            for owner in OWNERS:
                await _ops.grant(tx, owner, 100, now=T0)
                await _ops.charge(tx, owner, 1, ref=f"first-{owner}", now=T0, daily_cap=50)
            await _ops.charge(tx, "ann", 7, ref="j1", now=T0, daily_cap=50)
            await _ops.reserve(tx, "ann", 8, ref="j2", now=T0, daily_cap=50)
            # bob's refund of ann's charge: USAGE drops ann's charge (r.ref = e.ref,
            # whoever's), and bob's usage is his own.
            await tx.insert_entry(_entry(5, "bob", EntryKind.REFUND, 7, "j1"))
            await tx.insert_entry(_entry(6, "bob", EntryKind.RELEASE, 8, "j2"))
        async with store.transaction() as tx:
            assert await tx.usage("ann", since=day[0], until=day[1]) == 1
            assert await tx.usage("bob", since=day[0], until=day[1]) == 1
            assert (await read_spend_state(tx, "ann", C, R, "j9", day)).used == 1
            assert (await read_spend_state(tx, "bob", C, R, "j9", day)).used == 1


@pytest.mark.parametrize("kind", ALL)
async def test_a_refund_counts_in_the_day_of_its_charge(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """A refund made the next day gives the credits back to the charge's day, not its own."""
    day1 = DayBoundary().window(T0)
    day2 = DayBoundary().window(T0 + timedelta(days=1))
    async with _any_store(kind, request) as store:
        async with store.transaction() as tx:
            await _ops.grant(tx, "ann", 100, now=T0)
            await _ops.charge(tx, "ann", 5, ref="j1", now=T0, daily_cap=50)
            await _ops.charge(tx, "ann", 3, ref="j2", now=day2[0], daily_cap=50)  # day 2 stored
            await _ops.refund(tx, "j1", now=day2[0] + timedelta(hours=1))
            await _ops.charge(
                tx, "ann", 2, ref="j3", now=day2[0] + timedelta(hours=2), daily_cap=50
            )
        async with store.transaction() as tx:
            assert await tx.usage("ann", since=day1[0], until=day1[1]) == 0
            assert await tx.usage("ann", since=day2[0], until=day2[1]) == 5
            assert (await read_spend_state(tx, "ann", C, R, "j9", day2)).used == 5
            assert (await read_spend_state(tx, "ann", C, R, "j9", day1)).used == 0


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_capped_charge_reads_the_stored_counter(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """After the first capped charge of a window, the usage is the account's counter:
    a counter changed by hand is what the next charge and ``usage`` see (no sum)."""
    day = DayBoundary().window(T0)
    async with _any_store(kind, request) as store:
        async with store.transaction() as tx:
            await _ops.grant(tx, "ann", 100, now=T0)
            await _ops.charge(tx, "ann", 4, ref="j1", now=T0, daily_cap=50)
        async with store.transaction() as tx:
            sql_tx: Any = tx
            row = await sql_tx._one(
                "SELECT cap_since, cap_until, cap_used FROM chatsvg_accounts WHERE owner = 'ann'"
            )
            assert row is not None and _decode(row[0]) == day[0] and _decode(row[1]) == day[1]
            assert row[2] == 4
            await sql_tx._exec("UPDATE chatsvg_accounts SET cap_used = 48 WHERE owner = 'ann'")
        async with store.transaction() as tx:
            assert await tx.usage("ann", since=day[0], until=day[1]) == 48
            with pytest.raises(DailyCapExceeded) as refused:
                await _ops.charge(tx, "ann", 3, ref="j2", now=T0, daily_cap=50)
            assert refused.value.fields["used"] == 48
        # Another window is summed from the entries, and becomes the stored one.
        other = DayBoundary(timezone(timedelta(hours=3))).window(T0)
        async with store.transaction() as tx:
            assert (await read_spend_state(tx, "ann", C, R, "j9", other)).used == 4
            assert await tx.usage("ann", since=day[0], until=day[1]) == 4


@pytest.mark.postgres
async def test_postgres_version_5_database_upgrades_with_the_counter_unset(
    postgres_url: str,
) -> None:
    import psycopg
    from psycopg import sql

    from chatsvg_core.storage._sql import SCHEMA_TABLE
    from chatsvg_core.storage.postgres import PostgresStore

    schema = new_schema_name()
    day = DayBoundary().window(T0)

    def run(text: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
            cur = conn.execute(text.encode())
            return cur.fetchall() if cur.description else []

    try:
        store = await PostgresStore.open(postgres_url, schema=schema, max_size=1)
        async with store.transaction() as tx:
            await _ops.grant(tx, "ann", 100, now=T0)
            await _ops.charge(tx, "ann", 7, ref="j1", now=T0, daily_cap=50)
        await store.aclose()
        run(
            "ALTER TABLE chatsvg_accounts DROP COLUMN cap_since, DROP COLUMN cap_until, "
            f"DROP COLUMN cap_used; DELETE FROM {SCHEMA_TABLE} WHERE version >= 6"
        )
        store = await PostgresStore.open(postgres_url, schema=schema, max_size=1)
        try:
            assert run("SELECT cap_since, cap_until, cap_used FROM chatsvg_accounts") == [
                (None, None, None)
            ]
            async with store.transaction() as tx:
                assert await tx.usage("ann", since=day[0], until=day[1]) == 7
                await _ops.charge(tx, "ann", 5, ref="j2", now=T0, daily_cap=50)
            assert run("SELECT cap_used FROM chatsvg_accounts") == [(12,)]
        finally:
            await store.aclose()
    finally:
        drop_schema(postgres_url, schema)
