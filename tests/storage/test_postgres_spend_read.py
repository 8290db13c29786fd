"""PostgreSQL's spend read: one statement when its snapshot is current, the same answer always.

``PostgresTransaction.spend_state`` locks the owner's account and reads the
reference's entries in one statement, and reads the entries again after the
lock only when the statement's snapshot did not already hold the account row
it locked (someone wrote for this owner while it waited). Checked here:

* after any history (grants, capped charges and reservations on several days,
  refunds, captures, releases, entries written by hand), its answer equals the
  reference read over the fine primitives, for every owner, kind, reference
  and window;
* a spend that waited for the lock while the holder charged, reserved or
  spent up to the cap sees what the holder wrote, as a read after the lock
  does; one that waited on a holder who wrote nothing answers in one
  statement;
* the engine sends six statements per job on PostgreSQL (submit 2, claim 1,
  spend read 1, charge 1, finish 1), as the hand-written floor of
  ``benchmarks/bench_floor.py`` does: one more fails here.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import anyio
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatsvg_core import Engine, GenerationRequest, Ledger, ProviderOutput
from chatsvg_core.errors import DailyCapExceeded, InsufficientCredits
from chatsvg_core.ledger import _ops
from chatsvg_core.ledger._errors import LedgerConflict
from chatsvg_core.storage import EntryKind, StoreTransaction
from chatsvg_core.storage._spend import read_spend_state, read_spend_state_reference
from chatsvg_core.storage.postgres import PostgresStore, PostgresTransaction

from ._sqlhelpers import drop_schema, emptied_postgres, fresh_postgres, new_schema_name
from .test_cap_counter import _OPS, _SETTINGS, BOUNDARIES, OWNERS, T0, apply

pytestmark = pytest.mark.postgres

C, R = EntryKind.CHARGE, EntryKind.RESERVE

# --- the answer equals the reference read ------------------------------------------

_query = st.tuples(
    st.sampled_from((*OWNERS, "nobody")),
    st.sampled_from(((C, R), (R, C))),
    st.sampled_from(("job-0", "job-1", "job-2", "job-3", "job-4", "new")),
    st.one_of(
        st.none(),
        st.tuples(st.integers(-1, 3), st.integers(0, len(BOUNDARIES) - 1)).map(
            lambda q: BOUNDARIES[q[1]].window(T0 + timedelta(days=q[0], hours=12))
        ),
    ),
)


@pytest.fixture(scope="module")
def pg_schema(postgres_url: str) -> Any:
    schema = new_schema_name()
    yield schema
    drop_schema(postgres_url, schema)


@settings(_SETTINGS, max_examples=30)
@given(ops=_OPS, queries=st.lists(_query, min_size=1, max_size=12))
def test_postgres_spend_read_equals_the_reference_after_any_history(
    postgres_url: str, pg_schema: str, ops: list[tuple[Any, ...]], queries: list[Any]
) -> None:
    async def body() -> None:
        async with emptied_postgres(postgres_url, pg_schema, max_size=1) as store:
            start = [("grant", owner, 60, T0) for owner in OWNERS]
            for i, op in enumerate(start + ops):
                await apply(store, op, i)
            for owner, (kind, other), ref, window in queries:
                async with store.transaction() as tx:
                    want = await read_spend_state_reference(tx, owner, kind, other, ref, window)
                # Twice: a window other than the stored one is summed and stored by
                # the first read, so the second reads the counter.
                for _ in range(2):
                    async with store.transaction() as tx:
                        got = await read_spend_state(tx, owner, kind, other, ref, window)
                    assert got == want, (owner, kind, ref, window)

    anyio.run(body)


# --- a spend that waited for the lock ---------------------------------------------


async def _pid(tx: StoreTransaction) -> int:
    assert isinstance(tx, PostgresTransaction)
    row = await tx._one("SELECT pg_backend_pid()")
    assert row is not None
    return int(row[0])


async def _until_waiting_for_a_lock(url: str, pid: int) -> None:
    """Return once backend ``pid`` waits for a lock (its statement has taken its snapshot)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for _ in range(500):
            cur = await conn.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
            )
            row = await cur.fetchone()
            if row is not None and row[0] == "Lock":
                return
            await asyncio.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited for a lock")


def _counting(tx: StoreTransaction, counts: Counter[str]) -> None:
    """Count the statements ``tx``'s spend read sends from now on."""
    assert isinstance(tx, PostgresTransaction)
    one, spend = tx._one, tx.spend_state
    inside = False

    async def counted_one(sql: str, params: Any = ()) -> Any:
        counts["statements"] += inside
        return await one(sql, params)

    async def counted_spend(*args: Any) -> Any:
        nonlocal inside
        inside = True
        try:
            return await spend(*args)
        finally:
            inside = False

    tx._one = counted_one  # type: ignore[method-assign]
    tx.spend_state = counted_spend  # type: ignore[method-assign]


async def _while_held(
    store: PostgresStore,
    url: str,
    holder: Callable[[StoreTransaction], Awaitable[Any]],
    waiter: Callable[[StoreTransaction], Awaitable[Any]],
) -> tuple[Any, Counter[str]]:
    """Run ``holder`` in one transaction, then ``waiter`` in another that starts its
    spend while the holder still holds the account lock; the holder commits once the
    waiter's statement waits for that lock. Returns the waiter's result (or the
    exception it raised) and the statements its spend read sent."""
    held = anyio.Event()
    release = anyio.Event()
    waiting: list[int] = []
    started = anyio.Event()
    counts: Counter[str] = Counter()
    outcome: list[Any] = []

    async def hold() -> None:
        async with store.transaction() as tx:
            await holder(tx)
            held.set()
            await release.wait()

    async def wait() -> None:
        await held.wait()
        try:
            async with store.transaction() as tx:
                waiting.append(await _pid(tx))
                started.set()
                _counting(tx, counts)
                outcome.append(await waiter(tx))
        except Exception as exc:
            outcome.append(exc)
        finally:
            started.set()
            release.set()

    async def watch() -> None:
        await started.wait()
        if waiting and not outcome:
            await _until_waiting_for_a_lock(url, waiting[0])
        release.set()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(hold)
            tg.start_soon(wait)
            tg.start_soon(watch)
    return outcome[0], counts


@asynccontextmanager
async def _ann_with(postgres_url: str, credits: int) -> AsyncIterator[PostgresStore]:
    async with fresh_postgres(postgres_url, max_size=3) as store:
        async with store.transaction() as tx:
            await _ops.grant(tx, "ann", credits, now=T0)
            # A first capped charge stores the day's counter (one sum, once).
            await _ops.charge(tx, "ann", 1, ref="first", now=T0, daily_cap=100)
        yield store


def _charge(ref: str, amount: int, cap: int | None = 100) -> Callable[[StoreTransaction], Any]:
    async def run(tx: StoreTransaction) -> Any:
        return await _ops.charge(tx, "ann", amount, ref=ref, now=T0, daily_cap=cap)

    return run


async def test_a_spend_that_waited_sees_the_holders_charge_as_a_replay(
    postgres_url: str,
) -> None:
    # The holder's charge takes every credit left: a read that missed it would
    # answer InsufficientCredits instead of the replay.
    async with _ann_with(postgres_url, 6) as store:
        got, counts = await _while_held(store, postgres_url, _charge("j1", 5), _charge("j1", 5))
        assert not isinstance(got, Exception), got
        async with store.transaction() as tx:
            entry = await tx.find_entry(C, "j1")
            assert entry is not None and got == entry
            assert await tx.balance("ann") == 0
        assert counts["statements"] == 2  # the row changed while it waited: read again


async def test_a_spend_that_waited_sees_the_holders_reservation(postgres_url: str) -> None:
    async def reserve(tx: StoreTransaction) -> Any:
        return await _ops.reserve(tx, "ann", 5, ref="j1", now=T0, daily_cap=100)

    async with _ann_with(postgres_url, 50) as store:
        got, _ = await _while_held(store, postgres_url, reserve, _charge("j1", 5))
        assert isinstance(got, LedgerConflict), got
        async with store.transaction() as tx:
            assert await tx.find_entry(C, "j1") is None
            assert await tx.balance("ann") == 44


async def test_a_spend_that_waited_sees_the_holders_usage(postgres_url: str) -> None:
    async with _ann_with(postgres_url, 50) as store:
        got, _ = await _while_held(store, postgres_url, _charge("j1", 5, 8), _charge("j2", 3, 8))
        assert isinstance(got, DailyCapExceeded), got
        assert got.fields["used"] == 6


async def test_a_spend_that_waited_sees_the_holders_spending(postgres_url: str) -> None:
    async with _ann_with(postgres_url, 10) as store:
        got, _ = await _while_held(store, postgres_url, _charge("j1", 5), _charge("j2", 5))
        assert isinstance(got, InsufficientCredits), got
        assert got.fields["balance"] == 4


async def test_a_spend_that_waited_on_a_holder_who_wrote_nothing_reads_once(
    postgres_url: str,
) -> None:
    async def lock(tx: StoreTransaction) -> Any:
        return await tx.lock_account("ann")

    async with _ann_with(postgres_url, 10) as store:
        got, counts = await _while_held(store, postgres_url, lock, _charge("j1", 5))
        assert not isinstance(got, Exception), got
        assert got.amount == -5
        assert counts["statements"] == 1


# --- statements per job ---------------------------------------------------------------


class _Instant:
    name = "instant"

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        svg = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1 1"><path d="M0 0h1"/></svg>'
        return ProviderOutput(text=svg, model="instant", provider=self.name, latency_s=0.0)


async def test_the_engine_sends_six_statements_per_capped_job(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts: Counter[str] = Counter()
    execute = psycopg.AsyncCursor.execute
    wait = psycopg.AsyncConnection.wait

    async def counted_execute(self: Any, query: Any, params: Any = None, **kw: Any) -> Any:
        counts["statements"] += 1
        return await execute(self, query, params, **kw)

    async def counted_wait(self: Any, gen: Any, **kw: Any) -> Any:
        counts["round trips"] += 1
        return await wait(self, gen, **kw)

    async with fresh_postgres(postgres_url, max_size=1) as store:
        await Ledger(store).grant("ann", 1000)
        engine = Engine(store, None, _Instant(), daily_cap=10**6, lease=timedelta(minutes=5))
        # The first job of the day sums the day once and stores it: not counted.
        await engine.submit("ann", "k-0", {"prompt": "a cat 0"})
        assert await engine.process_next("w") is not None
        monkeypatch.setattr(psycopg.AsyncCursor, "execute", counted_execute)
        monkeypatch.setattr(psycopg.AsyncConnection, "wait", counted_wait)
        jobs = 10
        for i in range(1, jobs + 1):
            await engine.submit("ann", f"k-{i}", {"prompt": f"a cat {i}"})
            assert await engine.process_next("w") is not None
        monkeypatch.undo()
    # submit: the key's upsert and the job's insert, COMMIT; claim and charge:
    # claim, spend read, charge, COMMIT; finish: succeed with the result, COMMIT.
    assert counts["statements"] == 6 * jobs, counts
    assert counts["round trips"] == 9 * jobs, counts
