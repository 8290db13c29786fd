"""The embedded default backend: one SQLite file, safe for several processes.

How it stays correct with several writers (threads, tasks and processes):

* **WAL mode** (``PRAGMA journal_mode=WAL``): readers never block the writer
  and the writer never blocks readers.
* **``BEGIN IMMEDIATE``** for every transaction: it takes the database's
  write lock up front. A deferred transaction that reads first and writes
  later must *upgrade* its lock, and when another connection wrote meanwhile
  SQLite answers ``SQLITE_BUSY`` at once, ignoring the busy timeout; starting
  immediate avoids that failure and makes every transaction serializable. It
  also keeps the locking promises of the protocol: ``next_due_job``,
  ``get_job(for_update=True)`` and ``lock_account`` need no row locks, since
  no other writer can run until the transaction ends.
* **A busy timeout** (``busy_timeout``, default 10 s): a process that finds
  the write lock held waits for it instead of failing. If the wait runs out
  the transaction fails with :class:`~chatsvg_core.errors.StorageUnavailable`
  (transient) and wrote nothing.
* **In-process queueing**: inside one process the store's transactions take
  a lock with ``asyncio.Lock``'s rules (FIFO, no barging past waiters;
  ``_StoreLock``) before touching the database, so tasks of one process
  queue fairly instead of polling SQLite's busy handler. (Not
  ``anyio.Lock``: it yields to the loop on every acquire, an extra loop turn
  per transaction, which costs more than most of the transaction's
  statements.)
* **Waiting for another process's lock**: the connection's busy timeout
  is 0, so no statement sleeps in SQLite unless asked to. A task with other
  tasks beside it never blocks the loop: it retries ``BEGIN IMMEDIATE`` a
  few times within about 3 ms (``asyncio.sleep`` between tries), then waits
  out the rest of ``busy_timeout`` in SQLite's busy handler on the store's
  thread. A task alone in its process (see ``_alone``) waits in place, as
  hand-written code with a busy timeout does: the same short pauses
  (``time.sleep``), then SQLite's busy handler, for up to 50 ms in all
  (``_IN_PLACE_WAIT``), then on the store's thread; nothing else in the
  process could run meanwhile, and it saves a loop wake-up per try and the
  thread's round trip. A ``COMMIT`` that flushes to disk (``synchronous``
  FULL/EXTRA) runs on the store's own thread (one connection, one thread,
  calls in order) while the loop awaits it. Every statement once the lock
  is held, and a NORMAL commit, takes microseconds and runs in place: a
  thread hop per statement cost more than the statement, and on a loaded
  machine far more.
* **A task alone commits in place**: when the committing task is the
  process's only unfinished task, nothing else could run on the loop while
  a flushing ``COMMIT`` waits for the disk, so it runs in place (same flush,
  same durability) and skips the thread's round trip (see ``_alone``).
* **Durability**: ``synchronous=FULL`` by default, so a committed charge
  survives power loss; ``synchronous="normal"`` is faster (WAL stays
  consistent, but the last commits may be lost on power failure, not on a
  process crash).

Requires SQLite 3.35+ (``RETURNING``); Python's bundled SQLite is usually newer.
Runs on asyncio (as the rest of the library); sync hosts use
:class:`~chatsvg_core.storage.SyncStore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar
from weakref import WeakSet
from weakref import ref as _ref

import anyio

from chatsvg_core._clock import Clock, SystemClock, utc
from chatsvg_core._tasks import CURRENT_TASKS
from chatsvg_core.errors import (
    ConfigurationError,
    IncompatibleStorage,
    StorageError,
    StorageUnavailable,
)
from chatsvg_core.jobs import Job
from chatsvg_core.storage import _sql
from chatsvg_core.storage._errors import StoreClosed
from chatsvg_core.storage._protocol import EntryKind, IdempotencyRecord, JobResult, LedgerEntry
from chatsvg_core.storage._spend import SpendState, spend_state_of
from chatsvg_core.storage._sql import (
    _CLAIMED_COLUMNS,
    _KIND_TEXT,
    CLAIM_GUARD,
    CLAIM_KEY,
    CLAIM_SET,
    GIVE_BACK,
    INSERT_ENTRY,
    INSERT_NEW_JOB,
    INSERT_RESULT,
    LIVE_KEY,
    MOVE_BALANCE,
    MOVE_SPEND,
    ORIGINAL_TEXT,
    REVERSAL_TEXT,
    SCHEMA_TABLE,
    SUCCEED_GUARD,
    SUCCEED_SET,
    TABLES,
    FaultHook,
    SQLTransaction,
    _dump,
    _request_json,
    migrations,
)

__all__ = ["MIN_SQLITE_VERSION", "SQLiteStore", "SQLiteTransaction"]

T = TypeVar("T")

MIN_SQLITE_VERSION = (3, 35, 0)
"""``RETURNING`` arrived in SQLite 3.35."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)

Synchronous = Literal["full", "normal", "extra"]

_QUICK_RETRIES = (0.0002, 0.0004, 0.0008, 0.0016)
"""Pauses (seconds) between the quick tries to take the write lock.

``asyncio.sleep`` with other tasks in the process; ``time.sleep`` for a task
alone, which nothing else could use the loop meanwhile (``SQLiteStore._begin``).
"""

_IN_PLACE_WAIT = 0.05
"""Longest wait (seconds) for the write lock in SQLite's busy handler on the event loop.

Only a task alone in its process waits there (see ``SQLiteStore._begin``);
the bound keeps a timer or I/O callback that is not a task (a lease keeper's
timer, a protocol's callback) from waiting on it for all of ``busy_timeout``:
past it the wait goes on on the store's thread. SQLite's handler sleeps 1, 2,
5, 10, 15 ms and then the remainder between tries: after the 3 ms of quick
tries, six more.
"""

# Two statements answering by their change count instead of with RETURNING:
# SQLite buffers a RETURNING statement's rows in an ephemeral table (a
# temporary b-tree opened and closed per statement), which cost ~18 k
# instructions, more than a lookup by primary key (issue 15; callgrind:
# UPDATE ... RETURNING version 97 k, UPDATE then SELECT version 79 k).
# Under BEGIN IMMEDIATE no other writer runs between the two statements.
_CLAIM_KEY_COUNTED = CLAIM_KEY.removesuffix(" RETURNING scope")
"""``CLAIM_KEY`` without its row: one change exactly when this record became the live one
(inserted, or an expired record replaced; a live record makes the ``DO UPDATE``'s
``WHERE`` false, which changes nothing)."""
_SUCCEED_COUNTED = f"UPDATE chatsvg_jobs SET {SUCCEED_SET} WHERE {SUCCEED_GUARD}"
"""``SUCCEED_HELD`` without ``RETURNING`` (parameters: now, id, token)."""
_JOB_VERSION = "SELECT version FROM chatsvg_jobs WHERE id = ?"
_SUCCEED_AT = f"UPDATE chatsvg_jobs SET {SUCCEED_SET} WHERE {SUCCEED_GUARD} AND version = ?"
"""``_SUCCEED_COUNTED`` only at the held ``version`` (parameters: now, id, token, version):
when it matches, the new version is that plus one, without ``_JOB_VERSION``'s read."""
# The claim the same way: the job read first, then claimed by its id. The
# pick is the subquery of _claim_next_sql (the same order and guard, so the
# same row and the same index walk); the UPDATE repeats the guard.
_CLAIM_PICK = (
    f"SELECT {_CLAIMED_COLUMNS} FROM chatsvg_jobs WHERE {CLAIM_GUARD} "
    "ORDER BY run_at, created_at, id LIMIT 1"
)
"""The next due job's row as it is before the claim (parameter: now)."""
_CLAIM_PICK_ONE = f"SELECT {_CLAIMED_COLUMNS} FROM chatsvg_jobs WHERE id = ? AND {CLAIM_GUARD}"
"""That job's row if it can be claimed now (parameters: id, now)."""
_CLAIM_BY_ID = f"UPDATE chatsvg_jobs SET {CLAIM_SET} WHERE id = ? AND {CLAIM_GUARD}"
"""The claim of the picked job (parameters: lease expiry, worker id, now, id, now)."""


# spend_state's usual capped read: the account's row, whether the reference
# has an entry of the other mode, and the cap counter only when it holds this
# window and the reference has no entry of this kind yet (NULL otherwise, and
# no row without an account: the shared statement answers those). Three
# columns for the shared statement's five (the driver converts each and, on
# 3.11, names each for the cursor's description: ~1 k instructions a column),
# each value bound once (SQLite's numbered parameters: 6 for 10).
_SPEND_USUAL = (
    "SELECT a.balance, "
    "EXISTS (SELECT 1 FROM chatsvg_ledger o WHERE o.kind = ?1 AND o.ref = ?2), "
    "CASE WHEN a.cap_since = ?3 AND a.cap_until = ?4 AND s.id IS NULL THEN a.cap_used END "
    "FROM chatsvg_accounts a LEFT JOIN chatsvg_ledger s ON s.kind = ?6 AND s.ref = ?2 "
    "WHERE a.owner = ?5"
)
"""Parameters: other kind, ref, since, until, owner, kind."""

_LEASE_MICROS: dict[timedelta, int] = {}
"""Lease lengths seen by ``claim_due``, in microseconds (a few values; at most 16 kept)."""

_LEASE_CHUNK = 400
"""Leases per heartbeat statement (two parameters each; SQLite allows 32766 at least)."""


class _StoreThread:
    """The store's own thread: runs calls one at a time, in the order submitted.

    What ``ThreadPoolExecutor(max_workers=1)`` plus ``asyncio.wrap_future``
    did, at about two thirds of the cost per call (no ``concurrent.futures``
    future and its condition variable, no chained futures): a flushing
    ``COMMIT`` makes one such trip per transaction, and the trip cost as much
    as the rest of a short transaction. A call whose awaiting future was
    cancelled before the thread reached it is skipped, as the executor
    skipped a cancelled work item; one already running finishes.
    """

    __slots__ = ("_queue", "_thread")

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="chatsvg-sqlite", daemon=True)
            self._thread.start()
        self._queue.put((fn, future))
        return future

    def shutdown(self) -> None:
        """Let the thread end after the calls already submitted."""
        if self._thread is not None:
            self._queue.put(None)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, future = item
            if future.cancelled():
                continue
            try:
                result, error = fn(), None
            except BaseException as exc:  # handed to the awaiting task
                result, error = None, exc
            # A closed loop (RuntimeError) has nobody awaiting the answer any more.
            with contextlib.suppress(RuntimeError):
                future.get_loop().call_soon_threadsafe(_settle, future, result, error)


class _StoreLock:
    """The store's lock among the tasks of one process: first come, first served.

    ``asyncio.Lock`` (3.11), step for step: a free lock that no live waiter
    queues for is taken at once, without a turn of the loop; otherwise the
    task queues, and a release wakes the first waiter, which takes the lock
    when it runs (no task barges past a queued one meanwhile); a waiter
    cancelled after its wake-up passes the wake-up on. Its own class so that
    the usual case, a free lock and nobody queued, is two slots that
    ``SQLiteTransaction.__aenter__`` and ``__aexit__`` read and write in
    place: ``asyncio.Lock.acquire`` is a coroutine and ``release`` two
    Python calls, paid by every transaction (issue 15).
    tests/storage/test_sqlite_lock.py holds both to ``asyncio.Lock``, event
    for event, under random arrivals and cancellations.
    """

    __slots__ = ("held", "waiters")

    def __init__(self) -> None:
        self.held = False
        self.waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        """Take the lock, queueing behind the tasks already waiting for it."""
        if not self.held and all(w.cancelled() for w in self.waiters):
            self.held = True
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            try:
                await waiter
            finally:
                self.waiters.remove(waiter)
        except asyncio.CancelledError:
            # Woken but cancelled before it ran: the next waiter gets the wake-up.
            if not self.held:
                self.wake()
            raise
        self.held = True

    def release(self) -> None:
        """Free the lock and wake the first waiter (it takes the lock when it runs)."""
        if not self.held:
            raise RuntimeError("the store's lock is not held")
        self.held = False
        if self.waiters:
            self.wake()

    def wake(self) -> None:
        """Wake the first waiter, unless it is already woken or cancelled."""
        first = self.waiters[0] if self.waiters else None
        if first is not None and not first.done():
            first.set_result(None)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.cancelled():
        return
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)


# CPython's registry of live tasks (a WeakSet: 3.11 ``_all_tasks``, 3.12+
# ``_scheduled_tasks``), read only to answer _alone's question cheaply; where
# it is missing or does not hold the running task, _alone answers False.
_TASKS: Any = getattr(asyncio.tasks, "_scheduled_tasks", None)
if _TASKS is None:
    _TASKS = getattr(asyncio.tasks, "_all_tasks", None)
_EAGER: Any = getattr(asyncio.tasks, "_eager_tasks", ())

_running_loop = asyncio.get_running_loop

# A weak reference to the task _alone last asked about: the same task asking
# again makes no new one (~0.8 k instructions of its ~3.4 k).
_ASKED: Any = None

_ALONE_SCAN = 8
"""Past this many registered tasks (finished ones included), _alone does not look."""


def _alone() -> bool:
    """Whether the running task is the process's only unfinished task.

    Then nothing else could run on this event loop while a flushing
    ``COMMIT`` holds it (no other task, in this loop or another thread's),
    so the store runs that ``COMMIT`` in place instead of on its thread: the
    trip there and back costs more than the ``COMMIT`` apart from its wait
    on the disk. Timer and I/O callbacks not belonging to a task (a lease
    keeper's timer) run that much later. Conservative: any doubt is False.
    """
    registry = _TASKS
    if registry is None or _EAGER:
        return False
    tasks = CURRENT_TASKS
    current = asyncio.current_task() if tasks is None else tasks.get(_running_loop())
    if current is None:
        return False
    refs = registry.data if type(registry) is WeakSet else None  # type: ignore[attr-defined]
    if refs is not None and len(refs) == 1:
        # The WeakSet's own set of references, read without its Python-level
        # methods: one entry, and it is ours. (A dead entry waiting for
        # removal can only make the answer False.)
        global _ASKED
        asked = _ASKED
        if asked is None or asked() is not current:
            asked = _ASKED = _ref(current)
        return asked in refs
    count = len(registry)
    if count == 1:
        return current in registry
    if count > _ALONE_SCAN:
        return False
    try:
        tasks = list(registry)
    except RuntimeError:  # changed size while read (another thread's task)
        return False
    return current in tasks and all(t is current or t.done() for t in tasks)


_LAST_TS: tuple[datetime, int] = (_EPOCH, 0)
_LAST_TTL: tuple[timedelta, int] = (timedelta(0), 0)
"""The last idempotency ttl given to ``_insert_keyed_job``, and its microseconds."""


def _begin_waiting(conn: sqlite3.Connection, timeout: float) -> None:
    """``BEGIN IMMEDIATE`` waiting up to ``timeout`` in SQLite's busy handler.

    On the store's thread, or in place for a task alone (``SQLiteStore._begin``).
    The busy timeout is back at 0 afterwards, whatever happened. Milliseconds
    rounded up: SQLite counts its sleeps, which last at least as asked, so a
    wait up to a deadline ends at or past it, never a fraction of a
    millisecond short (which would leave a wait of nothing to hand on).
    """
    conn.execute(f"PRAGMA busy_timeout = {math.ceil(timeout * 1000)}")
    try:
        conn.execute("BEGIN IMMEDIATE")
    finally:
        conn.execute("PRAGMA busy_timeout = 0")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused because another connection holds the lock (SQLITE_BUSY)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return bool(code & 0xFF == sqlite3.SQLITE_BUSY)
    return "locked" in str(exc)


def _switch_to_wal(conn: sqlite3.Connection, timeout: float) -> Any:
    """``PRAGMA journal_mode = WAL``'s answer row, retried while SQLite says busy (store's thread).

    Switching a new file to WAL takes an exclusive lock, and SQLite refuses a
    lock upgrade that could deadlock at once, without its busy handler: seen
    as "database is locked" when six stores opened one new file together on
    a loaded machine (tests/storage/test_sql_backends.py). So the switch is
    tried again, with a growing pause, for up to ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            return conn.execute("PRAGMA journal_mode = WAL").fetchone()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _map_error(exc: sqlite3.Error, path: str) -> Exception:
    """The library error for a driver error (the original is chained)."""
    message = str(exc)
    if isinstance(exc, sqlite3.OperationalError):
        # Locked/busy past the timeout, disk I/O, file vanished: try again later.
        return StorageUnavailable(f"SQLite: {message}", backend="sqlite", path=path)
    if isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in message or "malformed" in message
    ):
        return IncompatibleStorage(f"SQLite: {message}", backend="sqlite", path=path)
    if isinstance(exc, sqlite3.IntegrityError):
        return StorageError(f"SQLite constraint: {message}", backend="sqlite", path=path)
    return StorageError(f"SQLite: {message}", backend="sqlite", path=path)


class SQLiteTransaction(SQLTransaction):
    """The primitives inside one ``BEGIN IMMEDIATE`` transaction.

    ``BEGIN IMMEDIATE`` is sent before the first statement (a transaction
    that runs no statement takes no lock at all); when another process holds
    the lock, the task retries on the event loop. Statements then run on the
    caller's thread, and ``COMMIT`` goes to the store's thread only when it
    flushes to disk (``synchronous`` FULL or EXTRA); with NORMAL a WAL commit
    is a write to the OS, and runs in place too. So a transaction costs at
    most one trip to the thread, not one per primitive.
    """

    dialect = "sqlite"

    # SQLTransaction.__init__'s _finished, and the cursor and connection not
    # yet had, as class defaults: the instance sets them when they change
    # (three stores fewer per transaction, three transactions a job).
    _finished = False
    # The transaction's one cursor, made when BEGIN IMMEDIATE has run (so
    # "begun" is "has a cursor"): conn.execute makes and frees a cursor per
    # statement, about 1.3 k instructions of the ~14 statements of a job.
    # A cursor's statement stays active until its next execute; one left
    # open by a multi-row SELECT read with fetchone is reset when the
    # cursor is dropped in __aexit__, before COMMIT or ROLLBACK (as the
    # cursors conn.execute made were reset when freed).
    _cur: sqlite3.Cursor | None = None
    _conn: sqlite3.Connection = None  # type: ignore[assignment]  # set by __aenter__

    def __init__(self, store: SQLiteStore, conn: sqlite3.Connection | None = None) -> None:
        self._store = store
        if conn is not None:
            self._conn = conn

    # The transaction is its own context manager (SQLiteStore.transaction):
    # the store's lock, then the transaction; a second object and a nested
    # context manager per transaction cost more than a short statement.
    async def __aenter__(self) -> SQLiteTransaction:
        store = self._store
        if store._closed:
            raise StoreClosed("the SQLite store is closed", store="sqlite", what="store")
        lock = store._lock
        if lock.held or lock.waiters:
            await lock.acquire()
            if store._closed:
                lock.release()
                raise StoreClosed("the SQLite store is closed", store="sqlite", what="store")
        else:
            lock.held = True  # _StoreLock.acquire's free case, in place: no await
        conn = store._conn
        if conn is None:
            try:
                conn = await store._connection()
            except BaseException:
                lock.release()
                raise
        self._conn = conn
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        store = self._store
        conn = self._conn
        cur = self._cur
        self._finished = True
        self._cur = None
        try:
            if exc_type is not None:
                del cur  # freed here: resets its statement (see __init__)
                await store._finish(conn, commit=False)
                return
            try:
                # SQLiteStore._finish(commit=True), inline (see there), with
                # COMMIT on the transaction's cursor (SQLiteStore._commit).
                if store.synchronous == "normal" or _alone():
                    try:
                        if cur is not None and store._fault_hook is None:
                            # _commit's body without hooks, in place (a call less).
                            if conn.in_transaction:
                                cur.execute("COMMIT")
                        else:
                            store._commit(conn, cur)
                    except sqlite3.Error as error:
                        raise _map_error(error, store.path) from error
                else:
                    await store._call(partial(store._commit, conn, cur))
            except BaseException:
                del cur
                # Shielded inside _finish: a cancelled task must still roll
                # back, or the connection would stay in a half-done transaction.
                await store._finish(conn, commit=False)
                raise
        finally:
            # _StoreLock.release, in place.
            lock = store._lock
            lock.held = False
            if lock.waiters:
                lock.wake()

    def _begun(self) -> sqlite3.Cursor | None:
        """``BEGIN IMMEDIATE`` in place, on the transaction's new cursor: the cursor.

        The usual case (a cursor is never false, so callers write ``_begun()
        or await _start()``). ``None`` when another process holds the write
        lock: then :meth:`_start` waits for it. Not a coroutine, so a
        transaction that finds the lock free awaits nothing to begin.
        """
        try:
            cur = self._conn.cursor()  # _new_cursor, in place
        except sqlite3.Error as exc:
            raise _map_error(exc, self._store.path) from exc
        if not self._store._begin_now(cur):
            return None
        self._cur = cur
        return cur

    async def _start(self) -> sqlite3.Cursor:
        """``BEGIN IMMEDIATE``, waiting for another process's lock if need be, then the cursor."""
        await self._store._begin(self._conn)
        cur = self._cur = self._new_cursor()
        return cur

    def _new_cursor(self) -> sqlite3.Cursor:
        try:
            return self._conn.cursor()
        except sqlite3.Error as exc:
            raise _map_error(exc, self._store.path) from exc

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # Statements run on the caller's thread: once BEGIN IMMEDIATE holds the
        # write lock, no statement of this transaction waits on another
        # connection (WAL readers never block, and we are the one writer), so
        # each takes microseconds and a hop to a thread would cost more.
        if self._cur is None and self._begun() is None:
            await self._start()
        try:
            return fn(self._conn)
        except sqlite3.Error as exc:
            raise _map_error(exc, self._store.path) from exc

    # The three statement runners inline _run's body: they are the hottest
    # calls of the store, and a closure plus a coroutine per statement cost
    # about as much as a short statement.
    async def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        cur = self._cur
        if cur is None:
            cur = self._begun() or await self._start()
        try:
            row: tuple[Any, ...] | None = cur.execute(sql, tuple(params)).fetchone()
        except sqlite3.Error as exc:
            raise _map_error(exc, self._store.path) from exc
        return row

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self._cur
        if cur is None:
            cur = self._begun() or await self._start()
        try:
            return cur.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise _map_error(exc, self._store.path) from exc

    async def _exec(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = self._cur
        if cur is None:
            cur = self._begun() or await self._start()
        try:
            return cur.execute(sql, tuple(params)).rowcount
        except sqlite3.Error as exc:
            raise _map_error(exc, self._store.path) from exc

    async def _append_entry(self, params: Sequence[Any]) -> bool:
        cur = self._cur
        if cur is None:
            cur = self._begun() or await self._start()
        return self._append_rows(cur, tuple(params))

    async def insert_entry(self, entry: LedgerEntry) -> LedgerEntry:
        """Append ``entry`` (and move the stored balance); a (kind, ref) seen before wins."""
        # SQLTransaction.insert_entry with _append_entry's statements run in
        # place: one coroutine per charge, not two.
        params = self._entry_params(entry)
        cur = self._cur
        if cur is None:
            cur = self._begun() or await self._start()
        if self._append_rows(cur, params):
            return entry
        return await self._first_entry(entry)

    def _append_rows(self, cur: sqlite3.Cursor, params: tuple[Any, ...]) -> bool:
        """``_append_entry``'s statements on the transaction's cursor: whether it inserted."""
        try:
            if cur.execute(INSERT_ENTRY, params).rowcount != 1:
                return False
            # The balance, and the cap counter (see _sql.MOVE_SPEND): a spend
            # counts in the same statement; a give-back takes one more.
            reversal = REVERSAL_TEXT.get(params[2])
            if reversal is not None:
                cur.execute(MOVE_SPEND, (params[1], params[3], params[6], reversal, params[4]))
            else:
                cur.execute(MOVE_BALANCE, (params[1], params[3], params[6]))
                original = ORIGINAL_TEXT.get(params[2])
                if original is not None:
                    cur.execute(GIVE_BACK, (original, params[4]))
        except sqlite3.Error as exc:
            raise _map_error(exc, self._store.path) from exc
        return True

    async def spend_state(
        self,
        owner: str,
        kind: EntryKind,
        other: EntryKind,
        ref: str,
        window: tuple[datetime, datetime] | None,
    ) -> SpendState:
        """:meth:`SQLTransaction.spend_state`, its usual capped read in place.

        A statement that reads only the usual spend's facts (``_SPEND_USUAL``),
        run on the cursor without ``_one``'s coroutine. When it finds the usual
        spend (an account whose stored window is ``window``, and no entry of
        ``kind`` for ``ref`` yet) it answers as the shared method does; anything
        else (no cap, no account, another window, a replay) is answered by the
        shared method, which reads again (the write lock is held: the same rows).
        tests/storage/test_sqlite_in_place.py holds the two equal.
        """
        cur = self._cur
        if window is None or cur is None or self._finished:
            return await super().spend_state(owner, kind, other, ref, window)
        last = _sql._LAST_WINDOW_TS  # _window_ts's memo, read inline
        if last[0] is window and last[1] is type(self):
            since, until = last[2]
        else:
            since, until = self._window_ts(window)
        try:
            row = cur.execute(
                _SPEND_USUAL,
                (_KIND_TEXT.get(other) or EntryKind(other).value, ref, since, until, owner,
                 _KIND_TEXT.get(kind) or EntryKind(kind).value),
            ).fetchone()  # fmt: skip
        except sqlite3.Error as exc:
            raise _map_error(exc, self._store.path) from exc
        if row is not None and row[2] is not None:
            return spend_state_of(True, None, bool(row[1]), int(row[0]), int(row[2]))
        return await super().spend_state(owner, kind, other, ref, window)

    async def claim_due(
        self,
        now: datetime,
        *,
        worker_id: str,
        lease_expires_at: datetime,
        job_id: str | None = None,
    ) -> Job | None:
        """:meth:`SQLTransaction.claim_due` without ``RETURNING`` (see ``_SUCCEED_COUNTED``).

        The job is read first (``_CLAIM_PICK``: the shared statement's
        subquery), then claimed by its id under the same guard. Under BEGIN
        IMMEDIATE no other writer runs between the two, so the row read is
        the row claimed; ``CLAIM_SET`` adds one to ``attempt`` and
        ``version``, which ``_claimed`` adds as it decodes the row.
        tests/storage/test_coarse_sql.py holds the answer and the stored row
        to ``claim`` on every reachable job shape.
        """
        if self._finished:  # _check_open, without its call on the hot path
            self._check_open()
        if now.tzinfo is not UTC:
            now = utc(now)
        if lease_expires_at.tzinfo is not UTC:
            lease_expires_at = utc(lease_expires_at)
        stamp = self._ts(now)
        cur = self._cur
        if cur is None:
            cur = self._begun() or await self._start()
        try:
            if job_id is None:
                row = cur.execute(_CLAIM_PICK, (stamp,)).fetchone()
            else:
                row = cur.execute(_CLAIM_PICK_ONE, (job_id, stamp)).fetchone()
            if row is None:
                return None
            # The expiry as now's stamp plus the lease (exact: both are whole
            # microseconds), the lease's length remembered by value: a
            # timedelta's conversion costs ~2 k instructions, and the engine's
            # lease is one value. _ts's memo keeps now's stamp for the
            # charge's entry.
            lease = lease_expires_at - now
            micros = _LEASE_MICROS.get(lease)
            if micros is None:
                micros = lease // _MICRO
                if len(_LEASE_MICROS) < 16:
                    _LEASE_MICROS[lease] = micros
            until = stamp + micros
            claimed = cur.execute(_CLAIM_BY_ID, (until, worker_id, stamp, row[0], stamp)).rowcount
        except sqlite3.Error as exc:
            raise _map_error(exc, self._store.path) from exc
        if claimed != 1:  # cannot happen under the write lock; refuse rather than guess
            return None
        # The row as read: CLAIM_SET added one to attempt and version.
        return self._claimed(row, worker_id, lease_expires_at, now, 1)

    # complete_job passes the held job's version to this store's succeed_held
    # (a keyword HeldJobFinisher does not have, so it asks for this mark first).
    _takes_held_version = True

    async def succeed_held(
        self,
        job_id: str,
        *,
        token: int,
        now: datetime,
        result: JobResult,
        version: int | None = None,
    ) -> tuple[int, JobResult] | None:
        """:meth:`SQLTransaction.succeed_held`, its two statements on the cursor in place.

        One coroutine, not three (``succeed_held``, ``_one``, ``put_result``
        and its ``_exec``): the same guarded ``UPDATE``, then ``put_result``'s
        insert, only if the update matched. The new ``version`` is read back
        by its id rather than with ``RETURNING`` (see ``_SUCCEED_COUNTED``).

        ``version``, when given, is the version the caller holds the job at
        (``complete_job`` passes the held job's): the ``UPDATE`` is tried at
        that version first (``_SUCCEED_AT``), and when it matches the new
        version is one more, so nothing is read back (-13.5 k instructions
        of a job's ~1.09 M, callgrind). When it does not (a heartbeat moved
        the row on, or the lease is gone) the guard without it decides, as
        without ``version``: the token alone fences the write either way.
        tests/storage/test_sqlite_in_place.py holds both to the shared path.
        """
        if self._finished:  # _check_open, without its call on the hot path
            self._check_open()
        if now.tzinfo is not UTC:  # utc() only where it has work
            now = utc(now)
        cur = self._cur
        if cur is None:
            cur = self._begun() or await self._start()
        try:
            stamp = self._ts(now)
            if (
                version is not None
                and cur.execute(_SUCCEED_AT, (stamp, job_id, token, version)).rowcount == 1
            ):
                version += 1
            else:
                if cur.execute(_SUCCEED_COUNTED, (stamp, job_id, token)).rowcount != 1:
                    return None
                # The row just written: this transaction holds the write lock.
                version = int(cur.execute(_JOB_VERSION, (job_id,)).fetchone()[0])
            inserted = cur.execute(INSERT_RESULT, self._result_params(result)).rowcount == 1
        except sqlite3.Error as exc:
            raise _map_error(exc, self._store.path) from exc
        return version, result if inserted else await self._first_result(result)

    async def _insert_keyed_job(
        self,
        job: Job,
        *,
        scope: str,
        now: datetime,
        expires_at: datetime,
        request_json: str | None = None,
        ttl: timedelta | None = None,
    ) -> IdempotencyRecord | None:
        # SQLTransaction._insert_keyed_job with its statements run on the
        # cursor in place, as _one and _exec run theirs. Under BEGIN IMMEDIATE
        # nothing changes between the claim and the read of the live record.
        # The engine hands over a job new_job or plain_new_job made a line
        # before: QUEUED, attempt and version 0, no lease, worker, error or
        # result, so those columns are INSERT_NEW_JOB's constants
        # (tests/engine/test_submit_paths.py compares the stored rows).
        # ``ttl``: what the engine added to ``now`` to make ``expires_at``
        # (its idempotency_ttl, one object), whose microseconds are kept:
        # ``expires_at``'s stamp is then ``now``'s plus those, a conversion
        # (2.9 k instructions) fewer per submit.
        global _LAST_TTL
        if self._finished:  # _check_open, without its call on the hot path
            self._check_open()
        cur = self._cur
        if cur is None:
            cur = self._begun() or await self._start()
        data = job.__dict__
        ts = self._ts
        # _ts without its memo (these two times are used once): no call.
        stamp = (now - _EPOCH) // _MICRO
        if ttl is None:
            until = (expires_at - _EPOCH) // _MICRO
        else:
            held = _LAST_TTL
            if held[0] is not ttl:
                held = _LAST_TTL = (ttl, ttl // _MICRO)
            until = stamp + held[1]
        key = data["idempotency_key"]
        try:
            won = (
                cur.execute(
                    _CLAIM_KEY_COUNTED,
                    (scope, key, data["request_hash"], data["id"], stamp, until, stamp),
                ).rowcount
                == 1
            )
            if not won:
                live = cur.execute(LIVE_KEY, (scope, key)).fetchone()
                if live is not None:
                    return self._record(live)
            else:
                created_at = data["created_at"]
                created = stamp if created_at is now else ts(created_at)
                run_at = data["run_at"]
                updated_at = data["updated_at"]
                trace = data["trace_context"]
                params = (
                    data["id"],
                    data["owner"],
                    data["max_attempts"],
                    created if run_at is created_at else ts(run_at),
                    _request_json(data["request"]) if request_json is None else request_json,
                    data["request_hash"],
                    key,
                    created,
                    created if updated_at is created_at else ts(updated_at),
                    None if trace is None else _dump(trace),
                )
                if cur.execute(INSERT_NEW_JOB, params).rowcount == 1:
                    return None
        except sqlite3.Error as exc:
            raise _map_error(exc, self._store.path) from exc
        if won:
            raise ValueError(f"a job with id {job.id!r} already exists")
        # Not reachable while the write lock is held; the shared path settles it.
        return await super()._insert_keyed_job(
            job, scope=scope, now=now, expires_at=expires_at, request_json=request_json, ttl=ttl
        )

    def _ts(self, value: datetime) -> int:
        # The last conversion is remembered by identity: one job's times are
        # mostly one ``now`` object, stamped 13 times per job. A datetime is
        # immutable and the memo holds it, so the same object has the same value.
        global _LAST_TS
        last = _LAST_TS
        if last[0] is value:
            return last[1]
        stamp = (value - _EPOCH) // _MICRO
        _LAST_TS = (value, stamp)  # one tuple, replaced whole: threads read a consistent pair
        return stamp

    def _dt(self, value: Any) -> datetime:
        # timedelta * int: half the cost of timedelta(microseconds=...), same value.
        return _EPOCH + _MICRO * int(value)

    def _now(self) -> datetime:
        return self._store._clock.now()

    async def extend_leases(
        self, leases: Mapping[str, int], *, now: datetime, lease: timedelta
    ) -> set[str]:
        """Batched heartbeat (:class:`~chatsvg_core.storage.LeaseExtender`): one UPDATE.

        No row locks to order: ``BEGIN IMMEDIATE`` already holds the write
        lock. Chunks keep each statement under SQLite's bound-parameter limit;
        all of them go to the store's thread in one trip.
        """
        self._check_open()
        until, stamp = self._ts(now + lease), self._ts(now)
        items = sorted(leases.items())

        def run(conn: sqlite3.Connection) -> set[str]:
            kept: set[str] = set()
            for start in range(0, len(items), _LEASE_CHUNK):
                chunk = items[start : start + _LEASE_CHUNK]
                marks = ", ".join(["(?, ?)"] * len(chunk))
                rows = conn.execute(
                    "UPDATE chatsvg_jobs SET "
                    "lease_expires_at = max(coalesce(lease_expires_at, ?), ?), "
                    "version = version + 1, updated_at = ? "
                    f"WHERE status = 'running' AND (id, lease_token) IN (VALUES {marks}) "
                    "RETURNING id",
                    (until, until, stamp, *(v for pair in chunk for v in pair)),
                ).fetchall()
                kept.update(row[0] for row in rows)
            return kept

        return await self._run(run)

    async def prune_idempotency(self, now: datetime, *, limit: int) -> int:
        """Delete up to ``limit`` records expired at or before ``now``; return how many."""
        self._check_open()
        return await self._exec(
            "DELETE FROM chatsvg_idempotency WHERE rowid IN ("
            "SELECT rowid FROM chatsvg_idempotency WHERE expires_at <= ? LIMIT ?)",
            (self._ts(now), max(0, limit)),
        )


class SQLiteStore:
    """A :class:`~chatsvg_core.storage.Store` in one SQLite database file.

    Open it with :meth:`open` (which checks and migrates the schema) rather
    than the constructor::

        store = await SQLiteStore.open("chatsvg.db")
        async with store.transaction() as tx:
            job = await tx.get_job("job-1")
        await store.aclose()

    Several stores, in one process or many, may share the file.
    """

    dialect = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 10.0,
        synchronous: Synchronous = "full",
        clock: Clock | None = None,
        fault_hook: FaultHook | None = None,
    ) -> None:
        if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
            raise ConfigurationError(
                f"SQLite {sqlite3.sqlite_version} is too old; chatsvg-core needs 3.35+",
                sqlite_version=sqlite3.sqlite_version,
            )
        if synchronous not in ("full", "normal", "extra"):
            raise ConfigurationError(
                "synchronous must be 'full', 'normal' or 'extra'", synchronous=synchronous
            )
        if busy_timeout < 0:
            raise ConfigurationError("busy_timeout must be >= 0", busy_timeout=busy_timeout)
        self.path = os.fspath(path)
        if self.path == ":memory:" or self.path.startswith("file:"):
            raise ConfigurationError(
                "SQLiteStore needs a file path; use memory:// (MemoryStore) for an in-memory store",
                path=self.path,
            )
        self.busy_timeout = busy_timeout
        self.synchronous: Synchronous = synchronous
        self._clock: Clock = clock or SystemClock()
        self._fault_hook = fault_hook
        self._conn: sqlite3.Connection | None = None
        self._lock = _StoreLock()
        self._closed = False
        # One thread per store runs every sqlite3 call, in submission order.
        self._executor: _StoreThread | None = _StoreThread()

    # --- lifecycle ----------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        auto_migrate: bool = True,
        busy_timeout: float = 10.0,
        synchronous: Synchronous = "full",
        clock: Clock | None = None,
        fault_hook: FaultHook | None = None,
    ) -> SQLiteStore:
        """Open (creating if needed) the database at ``path`` and check its schema.

        With ``auto_migrate`` (the default) missing migrations are applied;
        without it a database that is behind raises
        :class:`~chatsvg_core.errors.IncompatibleStorage` and :meth:`migrate`
        must be called first. A file that is not a SQLite database, holds
        tables that are not ours, or has a newer schema than this library
        knows is refused with :class:`~chatsvg_core.errors.IncompatibleStorage`.
        """
        store = cls(
            path,
            busy_timeout=busy_timeout,
            synchronous=synchronous,
            clock=clock,
            fault_hook=fault_hook,
        )
        try:
            if auto_migrate:
                await store.migrate()
            else:
                await store.check_schema()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await store.aclose()
            raise
        return store

    async def aclose(self) -> None:
        """Close the connection (after the running transaction, if any). Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._lock.acquire()
        try:
            conn, self._conn = self._conn, None
            if conn is not None:
                await self._call(conn.close)
            executor, self._executor = self._executor, None
            if executor is not None:
                executor.shutdown()
        finally:
            self._lock.release()

    async def __aenter__(self) -> SQLiteStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # --- plumbing ---------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: the driver never opens or commits transactions
        # behind our back; we issue BEGIN IMMEDIATE / COMMIT / ROLLBACK.
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            mode = _switch_to_wal(conn, self.busy_timeout)
            if mode is None or str(mode[0]).lower() != "wal":
                raise StorageUnavailable(
                    "SQLite could not switch the database to WAL mode",
                    backend="sqlite",
                    path=self.path,
                    journal_mode=None if mode is None else mode[0],
                )
            # Never sleep in SQLite's busy handler: the one statement that
            # waits for another process (BEGIN IMMEDIATE) retries on the
            # event loop instead (_begin).
            conn.execute("PRAGMA busy_timeout = 0")
        except BaseException:
            conn.close()
            raise
        return conn

    async def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the store's own thread and await it without blocking the loop."""
        executor = self._executor
        if executor is None:
            raise StoreClosed("the SQLite store is closed", store="sqlite", what="store")
        try:
            return await executor.submit(fn)
        except sqlite3.Error as exc:
            raise _map_error(exc, self.path) from exc

    async def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = await self._call(self._connect)
        return self._conn

    def _hook(self, point: str) -> None:
        if self._fault_hook is not None:
            self._fault_hook(point)

    def _begin_now(self, conn: sqlite3.Connection | sqlite3.Cursor) -> bool:
        """``BEGIN IMMEDIATE`` once, the usual case (nobody holds the lock): whether it began.

        ``False`` when another process holds the lock and ``busy_timeout``
        allows a wait: then :meth:`_begin` waits for it. Not a coroutine, so
        a transaction that finds the lock free awaits nothing to take it.
        ``conn`` may be a cursor of the connection (the transaction's own:
        ``conn.execute`` would make and free one more).
        """
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or self.busy_timeout <= 0:
                raise _map_error(exc, self.path) from exc
            return False
        except sqlite3.Error as exc:
            raise _map_error(exc, self.path) from exc
        hook = self._fault_hook
        if hook is not None:
            hook("begin")
        return True

    async def _begin(self, conn: sqlite3.Connection) -> bool:
        """Take the write lock (``BEGIN IMMEDIATE``), waiting up to ``busy_timeout`` for it.

        The connection's own busy timeout is 0, so an attempt on the event
        loop never sleeps in SQLite unless asked to. When another process
        holds the lock:

        * a task alone in its process (:func:`_alone`) waits in place
          (:meth:`_begin_in_place`): the same quick tries with ``time.sleep``
          between them, then SQLite's busy handler, as the hand-written floor
          waits, for up to ``_IN_PLACE_WAIT`` in all: nothing else in the
          process could run meanwhile, and it saves the loop's wake-up per
          try and, for most waits, the store's thread's round trip (issue 15,
          ``benchmarks/bench_sqlite_wait.py``: less CPU per wait up to 40 ms,
          somewhat more for a wait that outlasts the bound);
        * otherwise the task retries a few times after short ``asyncio.sleep``
          pauses (0.2 to 1.6 ms: that catches the gap between a busy
          process's transactions, which SQLite's handler, sleeping longer and
          longer between tries, rarely does), and other tasks run meanwhile;

        then waits out the rest of ``busy_timeout`` in SQLite's busy
        handler on the store's thread, which costs no CPU while it waits and
        leaves the loop free. Past the timeout: ``StorageUnavailable``, and
        no transaction is open. Returns ``True`` (begun); statements call
        :meth:`_begin_now` first.
        """
        deadline = time.monotonic() + self.busy_timeout
        if self._begin_now(conn):
            return True
        if _alone():
            if self._begin_in_place(conn, deadline):
                return True
        else:
            await asyncio.sleep(_QUICK_RETRIES[0])
            for delay in (*_QUICK_RETRIES[1:], None):
                if self._try_begin(conn, deadline):
                    return True
                if delay is None:
                    break
                await asyncio.sleep(delay)
        left = max(0.0, deadline - time.monotonic())
        await self._call(partial(_begin_waiting, conn, left))
        self._hook("begin")
        return True

    def _begin_in_place(self, conn: sqlite3.Connection, deadline: float) -> bool:
        """A task alone's wait for the lock, on the loop's thread: whether it began.

        The quick tries with ``time.sleep`` between them, then SQLite's busy
        handler, for up to ``_IN_PLACE_WAIT`` in all; ``False`` when the lock
        is still held and ``deadline`` allows more (the store's thread waits
        the rest). Not a coroutine: no cancellation can land between a try
        that took the lock and the begun transaction; it reaches the
        caller's next await, inside the transaction, which rolls back.
        """
        until = time.monotonic() + _IN_PLACE_WAIT
        for pause in _QUICK_RETRIES:
            time.sleep(pause)
            if self._try_begin(conn, deadline):
                return True
        return self._try_begin(
            conn, deadline, wait=max(0.0, min(until, deadline) - time.monotonic())
        )

    def _try_begin(
        self, conn: sqlite3.Connection, deadline: float, wait: float | None = None
    ) -> bool:
        """One more ``BEGIN IMMEDIATE``: whether it began (still busy: ``False``).

        Without ``wait`` it does not wait; with it, SQLite's busy handler waits
        up to ``wait`` seconds in place. Past ``deadline``, busy raises.
        """
        try:
            if wait is None:
                conn.execute("BEGIN IMMEDIATE")
            else:
                _begin_waiting(conn, wait)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() >= deadline:
                raise _map_error(exc, self.path) from exc
            return False
        except sqlite3.Error as exc:
            raise _map_error(exc, self.path) from exc
        self._hook("begin")
        return True

    @asynccontextmanager
    async def _locked(self) -> AsyncIterator[sqlite3.Connection]:
        """The store's connection, held by this task alone (FIFO among the process's tasks)."""
        if self._closed:
            raise StoreClosed("the SQLite store is closed", store="sqlite", what="store")
        await self._lock.acquire()
        try:
            if self._closed:
                raise StoreClosed("the SQLite store is closed", store="sqlite", what="store")
            yield await self._connection()
        finally:
            self._lock.release()

    async def _finish(self, conn: sqlite3.Connection, *, commit: bool) -> None:
        """COMMIT (with its hooks) or ROLLBACK, on the store's thread, in one trip.

        The job is submitted before it is awaited, and the thread runs jobs in
        order: even if the awaiting task is cancelled again, the connection is
        closed out before any later transaction uses it.
        """

        def rollback_job() -> None:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                # Unusable connection: drop it; SQLite discards the
                # uncommitted writes, and the next transaction reconnects.
                self._conn = None
                conn.close()

        if commit:
            if self.synchronous == "normal" or _alone():
                # No fsync at a WAL commit: microseconds, so no hop. Or a flushing
                # COMMIT with no other task in the process, which its wait on
                # the disk could hold up (see _alone).
                try:
                    self._commit(conn)
                except sqlite3.Error as exc:
                    raise _map_error(exc, self.path) from exc
                return
            await self._call(partial(self._commit, conn))
            return
        with anyio.CancelScope(shield=True):
            await self._call(rollback_job)

    def _commit(self, conn: sqlite3.Connection, cur: sqlite3.Cursor | None = None) -> None:
        """``COMMIT`` with its hooks (on the store's thread, or in place: see :meth:`_finish`).

        On the transaction's cursor ``cur`` when it has one (``conn.execute``
        would make and free another): its execute resets the statement it ran
        last first, as freeing it would (see ``SQLiteTransaction.__init__``).
        """
        hook = self._fault_hook
        if conn.in_transaction:
            if hook is not None:
                hook("before_commit")
            (conn if cur is None else cur).execute("COMMIT")
        if hook is not None:
            hook("after_commit")

    @asynccontextmanager
    async def _immediate(self) -> AsyncIterator[sqlite3.Connection]:
        """An eager ``BEGIN IMMEDIATE`` transaction, for schema work."""
        async with self._locked() as conn:
            await self._begin(conn)
            try:
                yield conn
                await self._finish(conn, commit=True)
            except BaseException:
                await self._finish(conn, commit=False)
                raise

    # --- the Store protocol -------------------------------------------------------

    def transaction(self) -> AbstractAsyncContextManager[SQLiteTransaction]:
        """One ``BEGIN IMMEDIATE`` transaction: commit on normal exit, roll back on error."""
        return SQLiteTransaction(self)

    # --- schema -------------------------------------------------------------------

    def _schema_state(self, conn: sqlite3.Connection) -> int:
        """The applied schema version (0 for an empty database); refuses foreign ones."""
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        latest = len(migrations(self.dialect))
        if SCHEMA_TABLE not in tables:
            if tables:
                raise IncompatibleStorage(
                    "the SQLite database holds tables that are not chatsvg-core's",
                    backend="sqlite",
                    path=self.path,
                    tables=sorted(tables)[:20],
                )
            return 0
        row = conn.execute(f"SELECT MAX(version) FROM {SCHEMA_TABLE}").fetchone()
        version = int(row[0]) if row and row[0] is not None else 0
        if version > latest:
            raise IncompatibleStorage(
                f"the database schema is version {version}; this library knows up to {latest}",
                backend="sqlite",
                path=self.path,
                version=version,
                latest=latest,
            )
        foreign = tables - TABLES
        if foreign:
            raise IncompatibleStorage(
                "the SQLite database holds tables that are not chatsvg-core's",
                backend="sqlite",
                path=self.path,
                tables=sorted(foreign)[:20],
            )
        return version

    async def schema_version(self) -> int:
        """The schema version stored in the database (0 when empty)."""
        async with self._immediate() as conn:
            return await self._call(partial(self._schema_state, conn))

    async def check_schema(self) -> None:
        """Refuse a database that is not ours or is not at this library's schema version."""
        version = await self.schema_version()
        latest = len(migrations(self.dialect))
        if version != latest:
            raise IncompatibleStorage(
                f"the database schema is version {version}, this library needs {latest}; "
                "call migrate()",
                backend="sqlite",
                path=self.path,
                version=version,
                latest=latest,
            )

    async def migrate(self) -> int:
        """Apply the missing forward migrations in one transaction; return the new version.

        Safe to call from several processes at once: the check and the
        migrations run under one ``BEGIN IMMEDIATE`` (SQLite's DDL is
        transactional), so exactly one applies them.
        """
        async with self._immediate() as conn:
            return await self._call(partial(self._migrate, conn))

    def _migrate(self, conn: sqlite3.Connection) -> int:
        version = self._schema_state(conn)
        now = (self._clock.now() - _EPOCH) // _MICRO
        for migration in migrations(self.dialect):
            if migration.version <= version:
                continue
            if migration.version == 1:
                conn.execute(
                    f"CREATE TABLE {SCHEMA_TABLE} (version INTEGER PRIMARY KEY, "
                    "name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
                )
            for statement in _statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {SCHEMA_TABLE} (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, now),
            )
            version = migration.version
        return version


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (``executescript`` would COMMIT first)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise StorageError("migration script ends inside a statement", tail=buffer[:200])
    return statements


def path_from_url(url: str) -> Path:
    """The file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ConfigurationError(
            "a SQLite URL is sqlite:///relative/path.db or sqlite:////absolute/path.db",
            url=url,
        )
    return Path(url[len(prefix) :])
