"""The production backend: PostgreSQL through psycopg 3 and psycopg-pool.

Needs the ``postgres`` extra (``pip install 'chatsvg-core[postgres]'``); the
driver is imported when this module is, so ``import chatsvg_core`` never
needs it.

How it keeps the protocol's promises under READ COMMITTED (the default
isolation, which this backend uses):

* ``next_due_job``: ``SELECT ... FOR UPDATE SKIP LOCKED`` — concurrent
  claimers each lock a different due job, and nobody waits on a row another
  worker is claiming.
* ``lock_account``: ``SELECT ... FOR UPDATE`` on the owner's row of
  ``chatsvg_accounts``; every transaction that checks a balance or a daily
  cap and then charges takes it first, so those checks cannot race.
  ``spend_state`` takes it in the statement that reads the charge's facts,
  and reads them again after it only when someone wrote for the owner while
  it waited (see there).
* ``insert_entry``: ``INSERT ... ON CONFLICT (kind, ref) WHERE ref IS NOT NULL
  DO NOTHING`` on a partial unique index — a second entry for the same job and
  kind is impossible whatever the application does; the loser of a race waits
  for the winner's commit, then reads the winner's entry.
* ``claim_idempotency``: one upsert that replaces a stored record only if it
  expired; see :meth:`~chatsvg_core.storage._sql.SQLTransaction.claim_idempotency`.
* A lost connection (server restart, ``pg_terminate_backend``, network) makes
  the operation raise :class:`~chatsvg_core.errors.StorageUnavailable`; the
  server rolls the transaction back and the pool discards the connection. If
  the connection is lost *during* ``COMMIT`` the outcome is unknown (the error
  has ``commit_unknown=True``); every write of the library is idempotent, so
  retrying the whole operation is safe.

Tables live in one PostgreSQL schema (``schema=...``, default: the first of
the server's ``search_path``, usually ``public``), which must hold nothing
but chatsvg-core's tables.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import anyio

from chatsvg_core._clock import Clock, SystemClock, utc
from chatsvg_core.errors import (
    ConfigurationError,
    IncompatibleStorage,
    StorageError,
    StorageUnavailable,
)
from chatsvg_core.jobs import Job
from chatsvg_core.storage._errors import StoreClosed
from chatsvg_core.storage._protocol import EntryKind, JobResult
from chatsvg_core.storage._spend import SpendState
from chatsvg_core.storage._sql import (
    _COUNT_SPEND,
    _JOB_COLUMNS,
    CAP_STORE,
    INSERT_ENTRY,
    ORIGINAL_TEXT,
    REVERSAL_TEXT,
    SCHEMA_TABLE,
    SUCCEED_GUARD,
    SUCCEED_SET,
    TABLES,
    USAGE,
    FaultHook,
    SQLTransaction,
    _dump,
    migrations,
)

try:
    import psycopg
    import psycopg.conninfo
    import psycopg.errors
    from psycopg import sql as pgsql
    from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ConfigurationError(
        "the PostgreSQL backend needs the 'postgres' extra: pip install 'chatsvg-core[postgres]'",
        extra="postgres",
        missing=exc.name,
    ) from exc

__all__ = ["PostgresStore", "PostgresTransaction"]

log = logging.getLogger("chatsvg_core.storage")

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

# Errors after which the same work may well succeed: the connection or server
# went away, or the server chose this transaction as a deadlock victim.
_TRANSIENT = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
)

AConn = psycopg.AsyncConnection[tuple[Any, ...]]

_APPEND_ENTRY = (
    "WITH ins AS ("
    f"{INSERT_ENTRY} RETURNING owner, amount, created_at), "
    "moved AS (INSERT INTO chatsvg_accounts (owner, balance, created_at) "
    "SELECT owner, amount, created_at FROM ins "
    "ON CONFLICT (owner) DO UPDATE SET balance = chatsvg_accounts.balance + excluded.balance "
    "RETURNING 1) "
    "SELECT (SELECT COUNT(*) FROM ins), (SELECT COUNT(*) FROM moved)"
)
# A charge or reservation: _APPEND_ENTRY counting it in the stored cap window
# (_sql.MOVE_SPEND; two more parameters: the reversing kind, the ref).
_APPEND_SPEND = (
    "WITH ins AS ("
    f"{INSERT_ENTRY} RETURNING owner, amount, created_at), "
    "moved AS (INSERT INTO chatsvg_accounts (owner, balance, created_at) "
    "SELECT owner, amount, created_at FROM ins "
    "ON CONFLICT (owner) DO UPDATE SET balance = chatsvg_accounts.balance + excluded.balance, "
    f"{_COUNT_SPEND} RETURNING 1) "
    "SELECT (SELECT COUNT(*) FROM ins), (SELECT COUNT(*) FROM moved)"
)
# A refund or release: its original leaves the counter of the original's owner
# (_sql.GIVE_BACK; one more parameter: the original's kind). One statement
# must not update a row twice, so the give-back rides on the balance's upsert
# when the owners are the same (always, through the ledger) and is a separate
# UPDATE of the other row when they are not (an entry written by hand).
_APPEND_GIVE_BACK = (
    "WITH ins AS ("
    f"{INSERT_ENTRY} RETURNING owner, amount, created_at, ref), "
    "orig AS (SELECT c.owner, c.amount, c.created_at FROM chatsvg_ledger c "
    "JOIN ins ON c.ref = ins.ref WHERE c.kind = ?), "
    "moved AS (INSERT INTO chatsvg_accounts (owner, balance, created_at) "
    "SELECT owner, amount, created_at FROM ins "
    "ON CONFLICT (owner) DO UPDATE SET balance = chatsvg_accounts.balance + excluded.balance, "
    "cap_used = chatsvg_accounts.cap_used + COALESCE((SELECT o.amount FROM orig o "
    "WHERE o.owner = chatsvg_accounts.owner AND o.created_at >= chatsvg_accounts.cap_since "
    "AND o.created_at < chatsvg_accounts.cap_until), 0) RETURNING 1), "
    "given AS (UPDATE chatsvg_accounts a SET cap_used = a.cap_used + o.amount "
    "FROM orig o, ins WHERE a.owner = o.owner AND o.owner <> ins.owner "
    "AND o.created_at >= a.cap_since AND o.created_at < a.cap_until RETURNING 1) "
    "SELECT (SELECT COUNT(*) FROM ins), (SELECT COUNT(*) FROM moved), (SELECT COUNT(*) FROM given)"
)


# spend_state's statements. The first locks the owner's account and returns
# the row as it is now, the entries of the reference as the statement's
# snapshot has them, and whether that snapshot held the row version it locked
# (NULL: no account). The second reads the entries again, after the lock (and,
# for a window other than the stored one, sums its usage).
_SPEND_LOCK = (
    "WITH a AS (SELECT balance, cap_since, cap_until, cap_used, ctid FROM chatsvg_accounts "
    "WHERE owner = ? FOR UPDATE) "
    "SELECT a.balance, a.cap_since, a.cap_until, a.cap_used, "
    "a.ctid = (SELECT b.ctid FROM chatsvg_accounts b WHERE b.owner = ?), "
    "s.id, s.owner, s.amount, s.memo, s.created_at, "
    "EXISTS (SELECT 1 FROM chatsvg_ledger o WHERE o.kind = ? AND o.ref = ?) "
    "FROM (SELECT 1) AS one LEFT JOIN a ON true "
    "LEFT JOIN chatsvg_ledger s ON s.kind = ? AND s.ref = ?"
)
_SPEND_FACTS_HEAD = (
    "SELECT s.id, s.owner, s.amount, s.memo, s.created_at, "
    "EXISTS (SELECT 1 FROM chatsvg_ledger o WHERE o.kind = ? AND o.ref = ?), "
)
_SPEND_FACTS_TAIL = " FROM (SELECT 1) AS one LEFT JOIN chatsvg_ledger s ON s.kind = ? AND s.ref = ?"
_SPEND_FACTS = f"{_SPEND_FACTS_HEAD}NULL{_SPEND_FACTS_TAIL}"
_SPEND_FACTS_USAGE = f"{_SPEND_FACTS_HEAD}({USAGE}){_SPEND_FACTS_TAIL}"

_FRESH = 5.0
"""Seconds after its last transaction in which a pooled connection is not pinged again."""


@lru_cache(maxsize=256)
def _pg(sql: str) -> str:
    """Portable ``?`` placeholders as psycopg's ``%s`` (our SQL has no other ``?`` or ``%``)."""
    return sql.replace("?", "%s")


def _map_error(exc: BaseException, **fields: Any) -> StorageError:
    if isinstance(exc, PoolClosed):
        return StoreClosed("the PostgreSQL store is closed", store="postgres", what="store")
    if isinstance(exc, PoolTimeout):
        return StorageUnavailable(f"PostgreSQL: {exc}", backend="postgres", **fields)
    if isinstance(exc, _TRANSIENT):
        sqlstate = getattr(exc, "sqlstate", None)
        return StorageUnavailable(
            f"PostgreSQL: {exc}", backend="postgres", sqlstate=sqlstate, **fields
        )
    return StorageError(
        f"PostgreSQL: {exc}", backend="postgres", sqlstate=getattr(exc, "sqlstate", None), **fields
    )


class PostgresTransaction(SQLTransaction):
    """The primitives inside one PostgreSQL transaction (READ COMMITTED)."""

    dialect = "postgres"
    for_update = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, store: PostgresStore, conn: AConn) -> None:
        super().__init__()
        self._store = store
        self._conn = conn

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        try:
            cur = await self._conn.execute(_pg(sql), params)
            return await cur.fetchone()
        except psycopg.Error as exc:
            raise _map_error(exc) from exc

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            cur = await self._conn.execute(_pg(sql), params)
            return await cur.fetchall()
        except psycopg.Error as exc:
            raise _map_error(exc) from exc

    async def _exec(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            cur = await self._conn.execute(_pg(sql), params)
            return cur.rowcount
        except psycopg.Error as exc:
            raise _map_error(exc) from exc

    async def _append_entry(self, params: Sequence[Any]) -> bool:
        # One round trip: the balance (and the cap counter) moves only for a
        # row the INSERT wrote.
        kind = params[2]
        reversal = REVERSAL_TEXT.get(kind)
        if reversal is not None:
            row = await self._one(_APPEND_SPEND, (*params, reversal, params[4]))
        else:
            original = ORIGINAL_TEXT.get(kind)
            if original is None:
                row = await self._one(_APPEND_ENTRY, params)
            else:
                row = await self._one(_APPEND_GIVE_BACK, (*params, original))
        return row is not None and row[0] == 1

    def _ts(self, value: datetime) -> datetime:
        return value

    def _dt(self, value: Any) -> datetime:
        return utc(value)

    def _now(self) -> datetime:
        return self._store._clock.now()

    async def spend_state(
        self,
        owner: str,
        kind: EntryKind,
        other: EntryKind,
        ref: str,
        window: tuple[datetime, datetime] | None,
    ) -> SpendState:
        """The spend read (``SpendReader``): one statement, two when it must.

        The first statement locks the account and reads the reference's
        entries. Under READ COMMITTED the locked row comes back as its latest
        version (after any wait for the lock), so the balance and the cap
        counter (schema 6) are current; the entries, though, are read in the
        snapshot the statement took when it started, which may predate the
        wait: a charge or a reservation committed by the lock's previous
        holder would be missing. So the statement also says whether its
        snapshot already held the locked version of the account row (the
        same ``ctid``). Every statement that writes an entry moves its
        owner's row (``_APPEND_*``: the balance moves with the entry), so
        when it did, nothing was written for this owner between the snapshot
        and the lock, and the snapshot's answer is the one a read after the
        lock gives. When it did not (the row changed while this transaction
        waited, or was created since), when the owner has no account, or
        when the stored counter is not ``window``'s, a second statement reads
        the entries again after the lock (and sums the usage, which a third
        stores, once per window), as before. (Entries of this reference
        written under another owner's lock are not ordered by this lock, here
        as in a read after it; the unique (kind, ref) index keeps each kind
        once whatever the reads saw.)
        """
        self._check_open()
        kind_text = EntryKind(kind).value
        other_text = EntryKind(other).value
        row = await self._one(_SPEND_LOCK, (owner, owner, other_text, ref, kind_text, ref))
        assert row is not None  # one row, whatever exists
        balance = row[0]
        since: datetime | None = None
        until: datetime | None = None
        counted: int | None = None
        if window is not None:
            since, until = utc(window[0]), utc(window[1])
            if row[1] == since and row[2] == until:
                counted = row[3]  # the stored window is this one: its counter
        if row[4]:  # the snapshot held the locked row: its entries are current
            if window is None:
                return self._spend_state(kind, ref, balance, (*row[5:11], None), False)
            if counted is not None:
                return self._spend_state(kind, ref, balance, (*row[5:11], counted), True)
        if window is None or counted is not None:
            facts = await self._one(_SPEND_FACTS, (other_text, ref, kind_text, ref))
        else:
            facts = await self._one(
                _SPEND_FACTS_USAGE, (other_text, ref, owner, since, until, kind_text, ref)
            )
        assert facts is not None  # one row, whatever exists
        if window is not None:
            if counted is not None:
                facts = (*facts[:6], counted)
            elif balance is not None:
                # Another window (a new day, another boundary, an account
                # from before schema 6): summed once, after the lock was
                # taken, and stored for the charges after it.
                await self._exec(CAP_STORE, (since, until, facts[6], owner))
        return self._spend_state(kind, ref, balance, facts, window is not None)

    async def _succeed(
        self, returning: str, job_id: str, token: int, now: datetime, result: JobResult
    ) -> tuple[tuple[Any, ...], JobResult] | None:
        """Succeed the job and store its result in one statement.

        The result's ``INSERT`` reads the job's ``UPDATE ... RETURNING``, so a
        refused transition (no row) stores nothing. Returns the ``returning``
        columns and the stored result (an earlier one stays if it was there).
        """
        self._check_open()
        row = await self._one(
            f"WITH done AS (UPDATE chatsvg_jobs SET {SUCCEED_SET} WHERE {SUCCEED_GUARD} "
            f"RETURNING {returning}), "
            "stored AS (INSERT INTO chatsvg_results (job_id, svg, metadata, created_at) "
            "SELECT id, ?, ?, ? FROM done ON CONFLICT (job_id) DO NOTHING RETURNING 1) "
            f"SELECT {returning}, (SELECT count(*) FROM stored) FROM done",
            (
                utc(now),
                job_id,
                token,
                result.svg,
                _dump(result.metadata),
                utc(result.created_at),
            ),
        )
        if row is None:
            return None
        if row[-1] == 1:
            return tuple(row[:-1]), result
        stored = await self.get_result(job_id)  # one was there already: it stays
        if stored is None:  # pragma: no cover - a result is never deleted
            raise StorageError("result vanished after a conflicting insert", job_id=job_id)
        return tuple(row[:-1]), stored

    async def succeed_job(
        self, job_id: str, *, token: int, now: datetime, result: JobResult
    ) -> tuple[Job, JobResult] | None:
        """Succeed the job and store its result in one statement (``JobFinisher``).

        The result's ``INSERT`` reads the job's ``UPDATE ... RETURNING``, so a
        refused transition (no row) stores nothing.
        """
        done = await self._succeed(_JOB_COLUMNS, job_id, token, now, result)
        return None if done is None else (self._job(done[0]), done[1])

    async def succeed_held(
        self, job_id: str, *, token: int, now: datetime, result: JobResult
    ) -> tuple[int, JobResult] | None:
        """:meth:`succeed_job` returning only the new ``version`` (``HeldJobFinisher``)."""
        done = await self._succeed("id, version", job_id, token, now, result)
        return None if done is None else (int(done[0][1]), done[1])

    async def extend_leases(
        self, leases: Mapping[str, int], *, now: datetime, lease: timedelta
    ) -> set[str]:
        """Batched heartbeat (:class:`~chatsvg_core.storage.LeaseExtender`): one statement.

        The ids and tokens travel as two arrays, so the statement text is the
        same for any number of leases. The rows are locked in id order first
        (as ``heartbeat_jobs_reference`` visits them), so two batches never
        deadlock each other; under READ COMMITTED a row another transaction
        changed meanwhile is re-checked after its commit, so a job completed
        or re-claimed under us is not extended.
        """
        self._check_open()
        ids = sorted(leases)
        rows = await self._all(
            "WITH held AS (SELECT j.id, h.token FROM chatsvg_jobs j "
            "JOIN unnest(?::text[], ?::integer[]) AS h(id, token) "
            "ON j.id = h.id AND j.lease_token = h.token "
            "WHERE j.status = 'running' ORDER BY j.id FOR UPDATE OF j) "
            "UPDATE chatsvg_jobs SET lease_expires_at = greatest(lease_expires_at, ?), "
            "version = version + 1, updated_at = ? "
            "FROM held WHERE chatsvg_jobs.id = held.id AND chatsvg_jobs.lease_token = held.token "
            "AND chatsvg_jobs.status = 'running' RETURNING chatsvg_jobs.id",
            (ids, [leases[i] for i in ids], utc(now + lease), utc(now)),
        )
        return {row[0] for row in rows}

    async def prune_idempotency(self, now: datetime, *, limit: int) -> int:
        """Delete up to ``limit`` records expired at or before ``now``; return how many."""
        self._check_open()
        # SKIP LOCKED: two pruners never wait on (or double-count) one row.
        return await self._exec(
            "DELETE FROM chatsvg_idempotency WHERE (scope, idem_key) IN ("
            "SELECT scope, idem_key FROM chatsvg_idempotency WHERE expires_at <= ? "
            "LIMIT ? FOR UPDATE SKIP LOCKED)",
            (utc(now), max(0, limit)),
        )


_CONNECT_TIMEOUT = 5
"""Seconds one connection attempt may take unless the URL sets ``connect_timeout``."""

# Server answers that no retry can change: the configuration is wrong.
_MISCONFIGURED = {
    "3D000": ("missing_database", "the database does not exist"),
    "28P01": ("bad_credentials", "the password was refused"),
    "28000": ("bad_credentials", "the server refused this user or client"),
    "42501": ("bad_credentials", "the user may not connect to this database"),
}


async def _probe(conninfo: str, params: dict[str, Any]) -> None:
    """Connect once, raising a typed error that names why it failed."""
    where = f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"
    database = params.get("dbname") or params.get("user") or ""
    try:
        conn = await psycopg.AsyncConnection.connect(conninfo)
    except psycopg.Error as exc:
        text = str(exc)
        known = _MISCONFIGURED.get(getattr(exc, "sqlstate", None) or "")
        # libpq reports a refused login as text without a SQLSTATE.
        if known is None and re.search(r'database "[^"]*" does not exist', text):
            known = ("missing_database", "the database does not exist")
        if known is None and re.search(r'role "[^"]*" does not exist', text):
            known = ("bad_credentials", "the user does not exist")
        if known is None and (
            "password authentication failed" in text
            or "no pg_hba.conf entry" in text
            or "no password supplied" in text
        ):
            known = ("bad_credentials", "the server refused the login")
        if known is None and "Connection refused" in text:
            known = ("connection_refused", "nothing accepts connections there (wrong port?)")
        if known is None and ("translate host name" in text or "Name or service" in text):
            known = ("unknown_host", "the host name does not resolve")
        if known is not None:
            cause, why = known
            raise ConfigurationError(
                f"PostgreSQL at {where}, database {database!r}: {why}",
                backend="postgres",
                cause=cause,
                host=where,
                database=database,
                sqlstate=getattr(exc, "sqlstate", None),
            ) from None
        # Timeouts and the like: the server may just be slow or restarting.
        raise StorageUnavailable(
            f"PostgreSQL at {where} is not reachable: {text.strip().splitlines()[-1]}",
            backend="postgres",
            host=where,
        ) from exc
    await conn.close()


class PostgresStore:
    """A :class:`~chatsvg_core.storage.Store` in a PostgreSQL schema, over a connection pool.

    Open it with :meth:`open`::

        store = await PostgresStore.open("postgresql://app@db/app", schema="chatsvg")
        async with store.transaction() as tx:
            ...
        await store.aclose()
    """

    dialect = "postgres"

    def __init__(
        self,
        pool: AsyncConnectionPool[AConn],
        *,
        schema: str | None = None,
        clock: Clock | None = None,
        fault_hook: FaultHook | None = None,
    ) -> None:
        self._pool = pool
        self.schema = schema
        self._clock: Clock = clock or SystemClock()
        self._fault_hook = fault_hook
        self._closed = False
        self._recent: weakref.WeakKeyDictionary[AConn, float] = weakref.WeakKeyDictionary()
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._watchers: dict[str, set[asyncio.Event]] = {}

    @classmethod
    async def open(
        cls,
        conninfo: str,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        pool_timeout: float = 30.0,
        check_connection: bool = True,
        auto_migrate: bool = True,
        clock: Clock | None = None,
        fault_hook: FaultHook | None = None,
    ) -> PostgresStore:
        """Connect a pool to ``conninfo`` (a ``postgresql://`` URL or libpq string).

        Args:
            schema: the PostgreSQL schema for the tables, created by
                :meth:`migrate` if missing; ``None`` uses the server's
                ``search_path``.
            min_size, max_size: pool bounds (psycopg-pool).
            pool_timeout: seconds to wait for a pooled connection before
                :class:`~chatsvg_core.errors.StorageUnavailable`.
            check_connection: test each connection as it leaves the pool
                (one short round trip), so a connection the server dropped
                while idle is replaced instead of failing the transaction.
                A connection that ended a transaction less than 5 s ago is
                not tested again (that round trip would be one per
                transaction under load).
            auto_migrate: apply missing migrations now (else only check the
                schema, and :meth:`migrate` must be called).
        """
        if schema is not None and not _SCHEMA_NAME.match(schema):
            raise ConfigurationError(
                "schema must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*, 63 chars max)",
                schema=schema,
            )
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ConfigurationError(
                "pool sizes need 0 <= min_size <= max_size and max_size >= 1",
                min_size=min_size,
                max_size=max_size,
            )
        try:
            params = psycopg.conninfo.conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError as exc:
            raise ConfigurationError(f"bad PostgreSQL conninfo: {exc}") from exc
        # Every session in UTC, and in our schema when one is given.
        options = [str(params.get("options") or ""), "-c timezone=UTC"]
        if schema is not None:
            options.append(f"-c search_path={schema}")
        params["options"] = " ".join(o for o in options if o)
        # One direct attempt first, bounded by connect_timeout: a wrong URL is
        # reported at once with its cause, instead of the pool retrying it
        # until pool_timeout and calling it a transient outage.
        params.setdefault("connect_timeout", str(_CONNECT_TIMEOUT))
        conninfo = psycopg.conninfo.make_conninfo("", **params)
        await _probe(conninfo, params)

        recent: weakref.WeakKeyDictionary[AConn, float] = weakref.WeakKeyDictionary()

        async def check(conn: AConn) -> None:
            # A ping is one round trip per transaction; a connection that
            # finished a transaction a moment ago is alive as far as a ping can
            # tell, and if it died since, the transaction fails as
            # StorageUnavailable like any connection lost mid-transaction.
            last = recent.get(conn)
            if last is not None and time.monotonic() - last < _FRESH:
                return
            await AsyncConnectionPool.check_connection(conn)

        pool: AsyncConnectionPool[AConn] = AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            timeout=pool_timeout,
            open=False,
            check=check if check_connection else None,
            name=f"chatsvg-{schema or 'default'}",
        )
        store = cls(pool, schema=schema, clock=clock, fault_hook=fault_hook)
        store._recent = recent
        try:
            try:
                await pool.open(wait=True, timeout=pool_timeout)
            except (PoolTimeout, psycopg.Error) as exc:
                raise StorageUnavailable(
                    f"PostgreSQL is not reachable: {exc}", backend="postgres"
                ) from exc
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
        """Close the pool; later transactions raise :class:`~chatsvg_core.errors.StoreClosed`."""
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await self._listener
        await self._pool.close()

    # --- job change feed (LISTEN/NOTIFY) ------------------------------------

    @asynccontextmanager
    async def subscribe(self, job_id: str) -> AsyncIterator[asyncio.Event | None]:
        """An event set whenever ``job_id`` changes status or attempt (after commit).

        One listening connection per store serves every subscriber (migration
        0003 installs the trigger that notifies). The event may also be set
        for no change (after the listener reconnects), so a subscriber
        re-reads the job, then clears it. ``None`` when no listener could be
        started in time: the caller polls instead.
        """
        event = asyncio.Event()
        self._watchers.setdefault(job_id, set()).add(event)
        try:
            conninfo = self._pool.conninfo
            if isinstance(conninfo, str) and (self._listener is None or self._listener.done()):
                self._listener = asyncio.create_task(
                    self._listen(conninfo), name="chatsvg-pg-listen"
                )
            with suppress(TimeoutError):
                # Subscribe before the caller's first read, so no change is missed.
                await asyncio.wait_for(self._listening.wait(), timeout=2.0)
            yield event if self._listening.is_set() else None
        finally:
            waiting = self._watchers.get(job_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._watchers[job_id]

    async def _listen(self, conninfo: str) -> None:
        while not self._closed:
            try:
                conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
                async with conn:
                    cur = await conn.execute("SELECT current_schema()")
                    row = await cur.fetchone()
                    schema = str(row[0]) if row else ""
                    await conn.execute("LISTEN chatsvg_job")
                    self._listening.set()
                    self._wake_all()  # whatever changed while we were not listening
                    async for note in conn.notifies():
                        where, _, job_id = note.payload.partition(":")
                        if where == schema:
                            for event in self._watchers.get(job_id, ()):
                                event.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the connection dropped: waiters poll meanwhile
                self._listening.clear()
                self._wake_all()
                log.warning("PostgreSQL job listener lost its connection: %s", exc)
                await asyncio.sleep(1.0)

    def _wake_all(self) -> None:
        for events in self._watchers.values():
            for event in events:
                event.set()

    async def __aenter__(self) -> PostgresStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"PostgresStore(schema={self.schema!r})"

    def _hook(self, point: str) -> None:
        if self._fault_hook is not None:
            self._fault_hook(point)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AConn]:
        """A pooled connection inside one transaction: commit on exit, roll back on error."""
        if self._closed:
            raise StoreClosed("the PostgreSQL store is closed", store="postgres", what="store")
        try:
            conn = await self._pool.getconn()
        except (PoolClosed, PoolTimeout, psycopg.Error) as exc:
            raise _map_error(exc) from exc
        try:
            try:
                self._hook("begin")
                yield conn
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await _quiet_rollback(conn)
                raise
            try:
                self._hook("before_commit")
                await conn.commit()
            except psycopg.Error as exc:
                with anyio.CancelScope(shield=True):
                    await _quiet_rollback(conn)
                # Lost during COMMIT: the server may or may not have committed.
                raise _map_error(exc, commit_unknown=True) from exc
            self._hook("after_commit")
        finally:
            self._recent[conn] = time.monotonic()
            # putconn discards a broken connection and resets an unclean one.
            with anyio.CancelScope(shield=True):
                await self._pool.putconn(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        """One READ COMMITTED transaction: commit on normal exit, roll back on error."""
        async with self._connection() as conn:
            tx = PostgresTransaction(self, conn)
            try:
                yield tx
            finally:
                tx._finished = True

    # --- schema -------------------------------------------------------------------

    async def _schema_state(self, conn: AConn) -> int:
        cur = await conn.execute("SELECT current_schema()")
        row = await cur.fetchone()
        current = None if row is None else row[0]
        if current is None:
            return 0  # the schema does not exist yet
        cur = await conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (current,),
        )
        tables = {r[0] for r in await cur.fetchall()}
        latest = len(migrations(self.dialect))
        if SCHEMA_TABLE not in tables:
            if tables:
                raise IncompatibleStorage(
                    f"PostgreSQL schema {current!r} holds tables that are not chatsvg-core's; "
                    "give chatsvg-core a schema of its own (schema=...)",
                    backend="postgres",
                    schema=current,
                    tables=sorted(tables)[:20],
                )
            return 0
        cur = await conn.execute(
            pgsql.SQL("SELECT MAX(version) FROM {}").format(pgsql.Identifier(SCHEMA_TABLE))
        )
        row = await cur.fetchone()
        version = int(row[0]) if row and row[0] is not None else 0
        if version > latest:
            raise IncompatibleStorage(
                f"the database schema is version {version}; this library knows up to {latest}",
                backend="postgres",
                schema=current,
                version=version,
                latest=latest,
            )
        foreign = tables - TABLES
        if foreign:
            raise IncompatibleStorage(
                f"PostgreSQL schema {current!r} holds tables that are not chatsvg-core's",
                backend="postgres",
                schema=current,
                tables=sorted(foreign)[:20],
            )
        return version

    async def schema_version(self) -> int:
        """The schema version stored in the database (0 when empty or missing)."""
        async with self._connection() as conn:
            try:
                return await self._schema_state(conn)
            except psycopg.Error as exc:
                raise _map_error(exc) from exc

    async def check_schema(self) -> None:
        """Refuse a schema that is not ours or not at this library's version."""
        version = await self.schema_version()
        latest = len(migrations(self.dialect))
        if version != latest:
            raise IncompatibleStorage(
                f"the database schema is version {version}, this library needs {latest}; "
                "call migrate()",
                backend="postgres",
                schema=self.schema,
                version=version,
                latest=latest,
            )

    async def migrate(self) -> int:
        """Apply the missing forward migrations in one transaction; return the new version.

        An advisory lock serialises concurrent callers (several processes
        starting at once); PostgreSQL's DDL is transactional, so a failed
        migration leaves nothing behind.
        """
        async with self._connection() as conn:
            try:
                return await self._migrate(conn)
            except psycopg.Error as exc:
                raise _map_error(exc) from exc

    async def _migrate(self, conn: AConn) -> int:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))",
            (f"chatsvg_core.migrate:{self.schema or ''}",),
        )
        if self.schema is not None:
            await conn.execute(
                pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pgsql.Identifier(self.schema))
            )
        version = await self._schema_state(conn)
        for migration in migrations(self.dialect):
            if migration.version <= version:
                continue
            if migration.version == 1:
                await conn.execute(
                    pgsql.SQL(
                        "CREATE TABLE {} (version integer PRIMARY KEY, name text NOT NULL, "
                        "applied_at timestamptz NOT NULL)"
                    ).format(pgsql.Identifier(SCHEMA_TABLE))
                )
            # No parameters, so psycopg sends the whole file as one simple query.
            await conn.execute(migration.sql.encode())
            await conn.execute(
                pgsql.SQL("INSERT INTO {} (version, name, applied_at) VALUES (%s, %s, %s)").format(
                    pgsql.Identifier(SCHEMA_TABLE)
                ),
                (migration.version, migration.name, self._clock.now()),
            )
            version = migration.version
        return version


async def _quiet_rollback(conn: AConn) -> None:
    # Only called while another exception propagates: if the connection is
    # gone, the server has already discarded the transaction, and that
    # original exception is the one the caller must see.
    with suppress(psycopg.Error):
        await conn.rollback()
