"""The SQLite store's in-process lock behaves as ``asyncio.Lock``, event for event.

The store queues its process's transactions on ``_StoreLock`` (issue 15: the
free case is taken and released in place by ``SQLiteTransaction.__aenter__``
and ``__aexit__``, without ``asyncio.Lock``'s coroutine and calls). These
properties run one random schedule three ways: tasks taking ``asyncio.Lock``
(the reference), tasks taking ``_StoreLock`` through its methods, and tasks
opening the store's transactions. Tasks arrive after a few loop turns, hold
the lock for a few, and some are cancelled at a chosen turn; every schedule
must give the same log of events, in the same order (who waits, who gets the
lock, who is cancelled where), and never two holders at once.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from chatsvg_core.storage.sqlite import SQLiteStore, _StoreLock

Holder = Callable[[], AbstractAsyncContextManager[Any]]

# One task: (loop turns before it asks, turns it holds, turn it is cancelled at or None).
_TASK = st.tuples(st.integers(0, 4), st.integers(0, 3), st.none() | st.integers(0, 10))
_SCHEDULE = st.lists(_TASK, min_size=1, max_size=6)


async def _run(
    holder: Holder, schedule: list[tuple[int, int, int | None]], holding: bool
) -> list[Any]:
    """The events of ``schedule``; ``holding``: a task may be cancelled while it holds the lock."""
    log: list[Any] = []
    state: dict[int, str] = {}
    inside = [0]

    async def task(i: int, arrive: int, hold: int) -> None:
        for _ in range(arrive):
            await asyncio.sleep(0)
        state[i] = "waiting"
        log.append(("waits", i))
        try:
            async with holder():
                state[i] = "holding"
                inside[0] += 1
                assert inside[0] == 1, "two holders at once"
                log.append(("gets", i))
                try:
                    for _ in range(hold):
                        await asyncio.sleep(0)
                finally:
                    inside[0] -= 1
            log.append(("releases", i))
        except asyncio.CancelledError:
            log.append(("cancelled", i, state[i]))
        state[i] = "done"

    tasks = [asyncio.create_task(task(i, a, h)) for i, (a, h, _) in enumerate(schedule)]
    for turn in range(12):
        for i, (_, _, at) in enumerate(schedule):
            if at == turn and state.get(i) in (("waiting", "holding") if holding else ("waiting",)):
                tasks[i].cancel()
        await asyncio.sleep(0)
    # Bounded: a lost wake-up would leave a waiter forever (a failure, not a hang).
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    return log


def _reference() -> Holder:
    lock = asyncio.Lock()
    return lambda: lock


def _own() -> Holder:
    lock = _StoreLock()

    @asynccontextmanager
    async def held() -> AsyncIterator[None]:
        await lock.acquire()
        try:
            yield
        finally:
            lock.release()

    return held


@given(_SCHEDULE)
@settings(max_examples=300, deadline=None)
@example([(0, 2, None), (0, 0, 1), (1, 0, None)])  # a waiter cancelled, another arrives
@example([(0, 1, None), (0, 1, 2), (0, 1, None)])  # cancelled after its wake-up
def test_store_lock_is_asyncio_lock(schedule: list[tuple[int, int, int | None]]) -> None:
    want = asyncio.run(_run_with(_reference, schedule, holding=True))
    got = asyncio.run(_run_with(_own, schedule, holding=True))
    assert got == want


async def _run_with(make: Callable[[], Holder], schedule: Any, *, holding: bool) -> list[Any]:
    return await _run(make(), schedule, holding)


@given(_SCHEDULE)
@settings(max_examples=60, deadline=None)
@example([(0, 2, None), (0, 0, 1), (1, 0, None)])
@example([(0, 1, None), (0, 1, 2), (0, 1, None)])
def test_the_store_s_transactions_queue_as_asyncio_lock(
    schedule: list[tuple[int, int, int | None]],
) -> None:
    # Transactions that run a statement and commit in place (synchronous
    # NORMAL: no trip to the store's thread, so the loop turns are the
    # schedule's). A holder is not cancelled here: its rollback goes to the
    # store's thread, which takes wall time, not loop turns.
    async def body() -> list[Any]:
        with tempfile.TemporaryDirectory() as tmp:
            store = await SQLiteStore.open(Path(tmp) / "l.db", synchronous="normal")
            try:

                @asynccontextmanager
                async def held() -> AsyncIterator[None]:
                    async with store.transaction() as tx:
                        await tx.balance("alice")
                        yield

                log = await _run(held, schedule, holding=False)
                assert not store._lock.held and not store._lock.waiters
                return log
            finally:
                await store.aclose()

    want = asyncio.run(_run_with(_reference, schedule, holding=False))
    assert asyncio.run(body()) == want
