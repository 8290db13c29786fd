"""What the SQL backends share: the primitives written once over a tiny driver interface.

:class:`SQLTransaction` implements every :class:`~chatsvg_core.storage.StoreTransaction`
primitive with portable SQL (``?`` placeholders; upserts with ``RETURNING``,
which both SQLite 3.35+ and PostgreSQL understand). A dialect subclass supplies
three coroutines that run one statement (``_one``, ``_all``, ``_exec``), the
time codec, and the locking clauses: PostgreSQL adds ``FOR UPDATE`` /
``SKIP LOCKED``; SQLite has nothing to add, because its write transactions
start with ``BEGIN IMMEDIATE`` and so already hold the database's one write
lock.

Also here: reading the migration files shipped in ``storage/sql/<dialect>/``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, ClassVar

from chatsvg_core._clock import utc
from chatsvg_core._construct import built, take_json
from chatsvg_core.errors import InvalidAmount, StorageError
from chatsvg_core.jobs import Job, JobErrorInfo, JobStatus
from chatsvg_core.storage._errors import StoreClosed
from chatsvg_core.storage._protocol import EntryKind, IdempotencyRecord, JobResult, LedgerEntry
from chatsvg_core.storage._spend import SpendState, spend_state_of

__all__ = [
    "CAP_STORE",
    "CLAIM_GUARD",
    "CLAIM_KEY",
    "CLAIM_SET",
    "GIVE_BACK",
    "INSERT_ENTRY",
    "INSERT_JOB",
    "INSERT_NEW_JOB",
    "INSERT_RESULT",
    "LIVE_KEY",
    "MOVE_BALANCE",
    "MOVE_SPEND",
    "ORIGINAL_TEXT",
    "REVERSAL_TEXT",
    "SCHEMA_TABLE",
    "SUCCEED_GUARD",
    "SUCCEED_HELD",
    "SUCCEED_SET",
    "TABLES",
    "USAGE",
    "USAGE_OF",
    "FaultHook",
    "Migration",
    "SQLTransaction",
    "migrations",
]

SCHEMA_TABLE = "chatsvg_schema_version"
"""The version table: one row per applied migration."""

TABLES = frozenset(
    {
        SCHEMA_TABLE,
        "chatsvg_jobs",
        "chatsvg_idempotency",
        "chatsvg_accounts",
        "chatsvg_ledger",
        "chatsvg_results",
        "chatsvg_rate_limits",
    }
)
"""Every table the schema owns (a database holding others is not ours)."""

# Terminal, older than the cutoff, no live idempotency key naming it (a replay
# would find no job), and its money settled: a FAILED job still holding a
# charge, or any job holding an unsettled reservation, waits for recovery.
_PURGEABLE = (
    "SELECT j.id FROM chatsvg_jobs j "
    "WHERE j.status IN ('succeeded', 'failed') AND j.updated_at < ? "
    "AND NOT EXISTS (SELECT 1 FROM chatsvg_idempotency i WHERE i.job_id = j.id "
    "AND i.expires_at > ?) "
    "AND NOT (j.status = 'failed' "
    "AND EXISTS (SELECT 1 FROM chatsvg_ledger c WHERE c.kind = 'charge' AND c.ref = j.id) "
    "AND NOT EXISTS (SELECT 1 FROM chatsvg_ledger r WHERE r.kind = 'refund' AND r.ref = j.id)) "
    "AND NOT (EXISTS (SELECT 1 FROM chatsvg_ledger h WHERE h.kind = 'reserve' AND h.ref = j.id) "
    "AND NOT EXISTS (SELECT 1 FROM chatsvg_ledger s WHERE s.kind IN ('capture', 'release') "
    "AND s.ref = j.id))"
)

FaultHook = Callable[[str], None]
"""A test hook called with a point name (``"begin"``, ``"before_commit"``, ...).

Crash tests use it to pause a process at a known point of a transaction and
kill it there; it is ``None`` in normal use.
"""

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_STATUS = {status.value: status for status in JobStatus}
"""A stored status to its member: a dict lookup costs a tenth of ``JobStatus(value)``."""
_RUNNING = JobStatus.RUNNING
"""A member read through its class runs a descriptor written in Python (3.11)."""
_STATUS_TEXT = {status: status.value for status in JobStatus}
"""A status to the plain ``str`` stored (``.value`` is a property, and drivers bind an
exact ``str`` fastest)."""

_JOB_COLUMNS = (
    "id, owner, status, attempt, max_attempts, run_at, lease_expires_at, lease_token, "
    "worker_id, request, request_hash, idempotency_key, last_error, result_ref, version, "
    "created_at, updated_at, trace_context"
)
_CLAIMED_COLUMNS = (
    "id, owner, attempt, max_attempts, run_at, request, request_hash, idempotency_key, "
    "last_error, result_ref, version, created_at, trace_context"
)
"""What a claim reads back: the columns ``CLAIM_SET`` does not decide itself."""
# The coarse job statements (JobClaimer, JobFinisher). Each is a transition of
# chatsvg_core.jobs written as SQL: the guard in WHERE, the effect in SET.
# tests/storage/test_coarse_sql.py runs them on every job shape the state
# machine reaches and checks each row against the pure transition function.
CLAIM_GUARD = "status = 'queued' AND run_at <= ? AND attempt < max_attempts"
"""``claim``'s guard: QUEUED, due, attempts left (parameter: now)."""
CLAIM_SET = (
    "status = 'running', attempt = attempt + 1, lease_token = attempt + 1, "
    "lease_expires_at = ?, worker_id = ?, version = version + 1, updated_at = ?"
)
"""``claim``'s effect (parameters: lease expiry, worker id, now)."""
SUCCEED_GUARD = "id = ? AND status = 'running' AND lease_token = ?"
"""``succeed``'s guard: RUNNING under the caller's token (parameters: id, token)."""
SUCCEED_SET = (
    "status = 'succeeded', lease_token = NULL, lease_expires_at = NULL, result_ref = id, "
    "version = version + 1, updated_at = ?"
)
"""``succeed``'s effect, with ``result_ref`` = the job's id (parameter: now)."""
INSERT_RESULT = (
    "INSERT INTO chatsvg_results (job_id, svg, metadata, created_at) "
    "VALUES (?, ?, ?, ?) ON CONFLICT (job_id) DO NOTHING"
)
_ENTRY_COLUMNS = "id, owner, kind, amount, ref, memo, created_at"
_IDEM_COLUMNS = "scope, idem_key, request_hash, job_id, created_at, expires_at"
INSERT_JOB = (
    f"INSERT INTO chatsvg_jobs ({_JOB_COLUMNS}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO NOTHING"
)
"""Insert a job (parameters: ``_job_params``); no row changed means its id exists."""
INSERT_NEW_JOB = (
    f"INSERT INTO chatsvg_jobs ({_JOB_COLUMNS}) "
    "VALUES (?, ?, 'queued', 0, ?, ?, NULL, NULL, NULL, ?, ?, ?, NULL, NULL, 0, ?, ?, ?) "
    "ON CONFLICT (id) DO NOTHING"
)
"""``INSERT_JOB`` for a job as ``new_job`` makes it (QUEUED, attempt and version 0, no
lease, worker, error or result), with those columns written as constants (parameters:
id, owner, max_attempts, run_at, request, request_hash, idempotency_key, created_at,
updated_at, trace_context)."""
CLAIM_KEY = (
    f"INSERT INTO chatsvg_idempotency ({_IDEM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (scope, idem_key) DO UPDATE SET "
    "request_hash = excluded.request_hash, job_id = excluded.job_id, "
    "created_at = excluded.created_at, expires_at = excluded.expires_at "
    "WHERE chatsvg_idempotency.expires_at <= ? RETURNING scope"
)
"""Claim (scope, key) unless a live record holds it (parameters: the record's
columns, then now); a row back means this record is now the live one."""
LIVE_KEY = f"SELECT {_IDEM_COLUMNS} FROM chatsvg_idempotency WHERE scope = ? AND idem_key = ?"
"""The record of (scope, key) (parameters: scope, key)."""
INSERT_ENTRY = (
    f"INSERT INTO chatsvg_ledger ({_ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (kind, ref) WHERE ref IS NOT NULL DO NOTHING"
)
USAGE = (
    "SELECT COALESCE(-SUM(e.amount), 0) FROM chatsvg_ledger e "
    "WHERE e.owner = ? AND e.kind IN ('charge', 'reserve') "
    "AND e.created_at >= ? AND e.created_at < ? "
    "AND NOT EXISTS (SELECT 1 FROM chatsvg_ledger r WHERE r.ref = e.ref "
    "AND r.kind = CASE e.kind WHEN 'charge' THEN 'refund' ELSE 'release' END)"
)
MOVE_BALANCE = (
    "INSERT INTO chatsvg_accounts (owner, balance, created_at) VALUES (?, ?, ?) "
    "ON CONFLICT (owner) DO UPDATE SET balance = chatsvg_accounts.balance + excluded.balance"
)

# The cap counter (schema 6): each account row keeps the net usage of one
# window, [cap_since, cap_until), in cap_used, so a capped charge reads it
# instead of summing the owner's entries of the day. Every statement that
# writes a ledger entry keeps it equal to USAGE over the stored window:
# * a charge or reservation created inside the window adds its amount, unless
#   its reference already has the refund or release that cancels it (USAGE's
#   NOT EXISTS, tested in the same order as a later give-back would be);
# * a refund or release subtracts its original's amount from the original
#   owner's counter when the original was created inside that owner's window
#   (whenever the give-back itself is created, as USAGE has it);
# * grants, adjustments and captures do not count, and entries are never
#   deleted, so nothing else moves it.
# A window other than the stored one is summed once with USAGE and stored by
# spend_state, under the account lock (CAP_STORE). A NULL window (an account
# made before schema 6, or never charged under a cap) matches no entry, so
# the CASE below leaves it NULL and costs one comparison.
_COUNT_SPEND = (
    "cap_used = CASE WHEN excluded.created_at >= chatsvg_accounts.cap_since "
    "AND excluded.created_at < chatsvg_accounts.cap_until "
    "AND NOT EXISTS (SELECT 1 FROM chatsvg_ledger r WHERE r.kind = ? AND r.ref = ?) "
    "THEN chatsvg_accounts.cap_used - excluded.balance ELSE chatsvg_accounts.cap_used END"
)
MOVE_SPEND = f"{MOVE_BALANCE}, {_COUNT_SPEND}"
"""``MOVE_BALANCE`` for a charge or reservation, counting it in the stored window
(parameters: owner, amount, created_at, the reversing kind, ref)."""
GIVE_BACK = (
    "UPDATE chatsvg_accounts SET cap_used = cap_used + c.amount FROM chatsvg_ledger c "
    "WHERE c.kind = ? AND c.ref = ? AND chatsvg_accounts.owner = c.owner "
    "AND c.created_at >= chatsvg_accounts.cap_since AND c.created_at < chatsvg_accounts.cap_until"
)
"""After a refund or release: its original leaves the counter of the original's
owner, if it was counted there (parameters: the original's kind, ref)."""
CAP_STORE = "UPDATE chatsvg_accounts SET cap_since = ?, cap_until = ?, cap_used = ? WHERE owner = ?"
"""Store a window's usage, summed under the account lock."""
_STALE_USAGE = f"CASE WHEN a.cap_since = ? AND a.cap_until = ? THEN NULL ELSE ({USAGE}) END"
"""NULL when the account's stored window is the one asked for, else USAGE over it
(parameters: since, until, owner, since, until). A scalar subquery in an untaken
branch is not run, on SQLite and on PostgreSQL (an InitPlan runs when first read)."""
USAGE_OF = (
    "SELECT CASE WHEN a.cap_since = ? AND a.cap_until = ? THEN a.cap_used "
    f"ELSE ({USAGE}) END FROM (SELECT 1) AS one LEFT JOIN chatsvg_accounts a ON a.owner = ?"
)
"""``usage``: the counter when its window is the one asked for, else USAGE
(parameters: since, until, owner, since, until, owner)."""
REVERSAL_TEXT = {"charge": "refund", "reserve": "release"}
"""A spend's kind to the kind that gives it back (and out of the usage)."""
ORIGINAL_TEXT = {"refund": "charge", "release": "reserve"}
"""A give-back's kind to the kind it gives back."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One forward migration file: ``NNNN_name.sql``."""

    version: int
    name: str
    sql: str


_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def migrations(dialect: str) -> tuple[Migration, ...]:
    """The migrations shipped for ``dialect`` (``sqlite`` or ``postgres``), in order."""
    folder = resources.files("chatsvg_core.storage").joinpath("sql", dialect)
    found: list[Migration] = []
    for item in folder.iterdir():
        match = _MIGRATION_NAME.match(item.name)
        if match:
            found.append(Migration(int(match[1]), match[2], item.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise StorageError(f"migration files for {dialect} are not numbered 1..n", dialect=dialect)
    return tuple(found)


# Compact and deterministic; ensure_ascii keeps NUL and other control
# characters escaped, which PostgreSQL text columns could not hold raw. One
# encoder for every call: json.dumps with options builds a new one each time.
_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True, allow_nan=False)
_ENCODE = _ENCODER.encode


def _c_encoder() -> Callable[[Any, int], Any] | None:
    """The C encoder ``_ENCODER.encode`` builds on every call, built once; ``None``
    where this Python's ``c_make_encoder`` is missing or takes other arguments.

    Without the circular-reference markers: every value stored is a validated
    model's JSON (acyclic); a cycle would end in ``RecursionError``.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        encode = make(None, _ENCODER.default, json.encoder.encode_basestring_ascii, None,
                      ":", ",", True, False, False)  # fmt: skip
        probe = {"b": [1, 2.5, None, True], "a": '\x00\u00e9\U0001f600"', "c": {}}
        if "".join(encode(probe, 0)) != _ENCODE(probe):
            return None
        try:
            encode(float("nan"), 0)
        except ValueError:
            return encode  # type: ignore[no-any-return]
    except Exception:  # another signature: the JSONEncoder does it all
        return None
    return None


_C_ENCODE = _c_encoder()


def _dump(value: Any) -> str:
    """``_ENCODE(value)``: compact, sorted keys, ASCII, no NaN (half its cost, in C)."""
    if _C_ENCODE is None or isinstance(value, str):  # a str is written by encode() itself
        return _ENCODE(value)
    return "".join(_C_ENCODE(value, 0))


_REQUEST_JSON: tuple[Any, str | None] = (None, None)
"""A new job's request dict and its JSON, handed over by the engine's submit
(:func:`remember_request_json`) and taken by the next ``_job_params`` of that
very dict."""


def remember_request_json(request: dict[str, Any], text: str) -> None:
    """Hand the next insert of ``request`` (by identity) its JSON, ``_dump(request)``.

    For the engine's submit, which has this text from the request's
    fingerprint (``request_hash_and_json``) and inserts the job right after.
    Taken once: the insert that uses it clears it, so a later write of the
    same dict (which its owner could have changed since) encodes it again.
    One slot for the process, replaced whole: another thread's submit only
    makes the insert encode its request itself.
    """
    global _REQUEST_JSON
    _REQUEST_JSON = (request, text)


def _request_json(request: Any) -> str:
    """``_dump(request)``, or the text :func:`remember_request_json` left for this dict."""
    global _REQUEST_JSON
    held = _REQUEST_JSON
    if held[0] is request and held[1] is not None:
        _REQUEST_JSON = (None, None)
        return held[1]
    return _dump(request)


_DECODER = json.JSONDecoder()


_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
"""The decoder's scanner (C where available), which ``raw_decode`` calls at index 0."""


def _loads(text: Any) -> Any:
    """``json.loads(text)``, at a third of its cost for the text ``_dump`` wrote.

    The decoder's C scanner straight away (``raw_decode``'s body, without its
    frame); anything it does not read whole (leading or trailing whitespace,
    bytes, malformed text) goes to ``json.loads``, which answers or raises as
    it always did.
    """
    try:
        value, end = _SCAN(text, 0)
    except (StopIteration, ValueError, TypeError):
        return json.loads(text)
    if end != len(text):
        return json.loads(text)
    return value


# The claim and finish statements, built once: a statement's text is the key
# of the driver's statement cache, and building and hashing it on every call
# cost a few thousand instructions per job.
_CLAIM_ONE = (
    f"UPDATE chatsvg_jobs SET {CLAIM_SET} WHERE id = ? AND {CLAIM_GUARD} "
    f"RETURNING {_CLAIMED_COLUMNS}"
)
SUCCEED_HELD = f"UPDATE chatsvg_jobs SET {SUCCEED_SET} WHERE {SUCCEED_GUARD} RETURNING version"
"""``succeed_held``'s statement (parameters: now, id, token): the new ``version``, if it matched."""


# spend_state's statement, with and without the usage of the cap's window.
# The entry this reference already has is named by its id alone: a replay is
# rare, and it is read whole then (find_entry); each column of a row costs
# the driver ~0.8 k instructions (its description and its value), and the
# usual spend has no entry to read (issue 15).
_SPEND_STATE_HEAD = (
    "SELECT a.balance, s.id, "
    "EXISTS (SELECT 1 FROM chatsvg_ledger o WHERE o.kind = ? AND o.ref = ?), "
)
_SPEND_STATE_TAIL = (
    " FROM (SELECT 1) AS one "
    "LEFT JOIN chatsvg_accounts a ON a.owner = ? "
    "LEFT JOIN chatsvg_ledger s ON s.kind = ? AND s.ref = ?"
)
_SPEND_STATE = f"{_SPEND_STATE_HEAD}NULL{_SPEND_STATE_TAIL}"
_SPEND_STATE_USAGE = f"{_SPEND_STATE_HEAD}{_STALE_USAGE}, a.cap_used{_SPEND_STATE_TAIL}"
_KIND_TEXT: dict[Any, str] = {kind: kind.value for kind in EntryKind}
"""An entry kind to the plain ``str`` stored (``EntryKind(x).value`` costs ten times more)."""
_LAST_WINDOW_TS: tuple[Any, Any, tuple[Any, Any]] = (None, None, (None, None))
"""The last cap window converted by ``_window_ts``: (window, transaction class, stamps)."""


@functools.cache
def _claim_next_sql(skip_locked: str) -> str:
    """``claim_due``'s statement for the next due job, with the dialect's lock clause."""
    return (
        f"UPDATE chatsvg_jobs SET {CLAIM_SET} WHERE id = (SELECT id FROM chatsvg_jobs "
        f"WHERE {CLAIM_GUARD} ORDER BY run_at, created_at, id LIMIT 1{skip_locked}) "
        f"AND {CLAIM_GUARD} RETURNING {_CLAIMED_COLUMNS}"
    )


class SQLTransaction:
    """The primitives over one open database transaction (dialect-neutral part)."""

    dialect: ClassVar[str] = "sql"
    """The backend's name, for error fields."""
    for_update: ClassVar[str] = ""
    """Appended to a SELECT that must lock its rows (``FOR UPDATE`` on PostgreSQL)."""
    skip_locked: ClassVar[str] = ""
    """Appended to the claim query (``FOR UPDATE SKIP LOCKED`` on PostgreSQL)."""

    def __init__(self) -> None:
        self._finished = False

    # --- driver interface (dialect subclasses) -----------------------------

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        raise NotImplementedError

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def _exec(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; return the number of rows it changed."""
        raise NotImplementedError

    async def _append_entry(self, params: Sequence[Any]) -> bool:
        """Insert a ledger row unless its (kind, ref) exists; if inserted, move the balance.

        ``params`` are the entry's columns in ``_ENTRY_COLUMNS`` order. Returns
        whether the row was inserted. Dialects override this to do both
        statements in one trip to the database.
        """
        if await self._exec(INSERT_ENTRY, params) != 1:
            return False
        kind = params[2]
        reversal = REVERSAL_TEXT.get(kind)
        if reversal is not None:
            await self._exec(MOVE_SPEND, (params[1], params[3], params[6], reversal, params[4]))
            return True
        await self._exec(MOVE_BALANCE, (params[1], params[3], params[6]))
        original = ORIGINAL_TEXT.get(kind)
        if original is not None:
            await self._exec(GIVE_BACK, (original, params[4]))
        return True

    def _ts(self, value: datetime) -> Any:
        """A datetime as the database stores it."""
        raise NotImplementedError

    def _dt(self, value: Any) -> datetime:
        """A stored time back as an aware UTC datetime."""
        raise NotImplementedError

    def _check_open(self) -> None:
        if self._finished:
            raise StoreClosed(
                "the transaction has ended; open a new one", store=self.dialect, what="transaction"
            )

    # --- row codecs ---------------------------------------------------------

    def _job_params(self, job: Job, request_json: str | None = None) -> tuple[Any, ...]:
        # From the job's own dict: a pydantic attribute read costs several
        # times a dict's subscript, and this runs for every insert and update.
        # request_json: _dump(job.request), when the caller has it.
        data = job.__dict__
        ts = self._ts
        lease_expires_at = data["lease_expires_at"]
        last_error = data["last_error"]
        trace_context = data["trace_context"]
        # A new job's three times are one datetime: converted once.
        created_at = data["created_at"]
        created = ts(created_at)
        run_at = data["run_at"]
        updated_at = data["updated_at"]
        return (
            data["id"],
            data["owner"],
            _STATUS_TEXT[data["status"]],
            data["attempt"],
            data["max_attempts"],
            created if run_at is created_at else ts(run_at),
            None if lease_expires_at is None else ts(lease_expires_at),
            data["lease_token"],
            data["worker_id"],
            _request_json(data["request"]) if request_json is None else request_json,
            data["request_hash"],
            data["idempotency_key"],
            None if last_error is None else _dump(last_error.model_dump(mode="json")),
            data["result_ref"],
            data["version"],
            created,
            created if updated_at is created_at else ts(updated_at),
            None if trace_context is None else _dump(trace_context),
        )

    def _job(self, row: tuple[Any, ...]) -> Job:
        # Decoded here, column by column, and built without pydantic's field
        # validation (the row was written from a validated Job; the cross-field
        # rules are still checked). tests/storage checks it equals the
        # validated model for every job shape the transitions reach.
        # Equal stored times decode once (a job's run_at is its created_at
        # until it is retried); datetimes are immutable, so sharing is safe.
        run_at = self._dt(row[5])
        created_at = run_at if row[15] == row[5] else self._dt(row[15])
        updated_at = created_at if row[16] == row[15] else self._dt(row[16])
        return Job._from_trusted(
            {
                "id": row[0],
                "owner": row[1],
                "request": _loads(row[9]),
                "request_hash": row[10],
                "idempotency_key": row[11],
                "status": _STATUS.get(row[2]) or JobStatus(row[2]),
                "attempt": int(row[3]),
                "max_attempts": int(row[4]),
                "run_at": run_at,
                "lease_expires_at": None if row[6] is None else self._dt(row[6]),
                "lease_token": None if row[7] is None else int(row[7]),
                "worker_id": row[8],
                "last_error": None
                if row[12] is None
                else JobErrorInfo.model_validate_json(row[12]),
                "result_ref": row[13],
                "version": int(row[14]),
                "created_at": created_at,
                "updated_at": updated_at,
                "trace_context": None if row[17] is None else _loads(row[17]),
            }
        )

    def _claimed(
        self,
        row: tuple[Any, ...],
        worker_id: str,
        lease_expires_at: datetime,
        now: datetime,
        bump: int = 0,
    ) -> Job:
        """:meth:`_job` of ``claim_due``'s row: what ``CLAIM_SET`` wrote is not read back.

        Status RUNNING, the token the new attempt, the lease's expiry, the
        worker and ``updated_at`` are the statement's own parameters; the
        rest is decoded as :meth:`_job` decodes it (``_CLAIMED_COLUMNS``).
        tests/storage/test_coarse_sql.py holds it equal to ``claim``.
        ``bump``: what ``CLAIM_SET`` adds to ``attempt`` and ``version``, for a
        row read before the claim (1; SQLite's ``claim_due``).
        """
        # The row unpacked once into locals (a subscript per use is three
        # bytecodes).
        (
            job_id,
            owner,
            attempt,
            max_attempts,
            stored_run_at,
            request_text,
            request_hash,
            idempotency_key,
            last_error,
            result_ref,
            version,
            stored_created_at,
            trace_context,
        ) = row
        run_at = self._dt(stored_run_at)
        created_at = run_at if stored_created_at == stored_run_at else self._dt(stored_created_at)
        attempt = int(attempt) + bump
        data: dict[str, Any] = {
            "id": job_id,
            "owner": owner,
            "request": _loads(request_text),
            "request_hash": request_hash,
            "idempotency_key": idempotency_key,
            "status": _RUNNING,
            "attempt": attempt,
            "max_attempts": int(max_attempts),
            "run_at": run_at,
            "lease_expires_at": lease_expires_at,
            "lease_token": attempt,
            "worker_id": worker_id,
            "last_error": None
            if last_error is None
            else JobErrorInfo.model_validate_json(last_error),
            "result_ref": result_ref,
            "version": int(version) + bump,
            "created_at": created_at,
            "updated_at": now,
            "trace_context": None if trace_context is None else _loads(trace_context),
        }
        if result_ref is None:
            # Job's cross-field rules hold by construction (RUNNING, the token the
            # attempt, an expiry, no result; the guard kept attempt <= max_attempts),
            # so the check _from_trusted makes is skipped; a row with a result
            # (written by something other than the transitions) is still refused.
            return built(Job, data)
        return Job._from_trusted(data)

    def _entry(self, row: tuple[Any, ...]) -> LedgerEntry:
        return LedgerEntry(
            id=row[0],
            owner=row[1],
            kind=EntryKind(row[2]),
            amount=row[3],
            ref=row[4],
            memo=row[5],
            created_at=self._dt(row[6]),
        )

    def _record(self, row: tuple[Any, ...]) -> IdempotencyRecord:
        return IdempotencyRecord(
            scope=row[0],
            key=row[1],
            request_hash=row[2],
            job_id=row[3],
            created_at=self._dt(row[4]),
            expires_at=self._dt(row[5]),
        )

    # --- paging -----------------------------------------------------------------

    @staticmethod
    def _older(before_id: str | None) -> str:
        # A row-value comparison (SQLite 3.15+, PostgreSQL): an index on
        # (…, created_at) still serves it, and equal timestamps at a page
        # boundary are neither lost nor repeated.
        return "created_at < ?" if before_id is None else "(created_at, id) < (?, ?)"

    def _cursor(self, before: datetime, before_id: str | None) -> list[Any]:
        ts = self._ts(utc(before))
        return [ts] if before_id is None else [ts, before_id]

    # --- jobs -----------------------------------------------------------------

    async def insert_job(self, job: Job) -> None:
        """Insert a new job; an existing id is a programming error (``ValueError``)."""
        self._check_open()
        # ON CONFLICT instead of catching the unique violation: on PostgreSQL
        # a failed statement would abort the caller's whole transaction.
        if await self._exec(INSERT_JOB, self._job_params(job)) != 1:
            raise ValueError(f"a job with id {job.id!r} already exists")

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
        """``bind_key``'s two store steps for a new ``job`` in one call (the engine's submit).

        What :meth:`claim_idempotency` of the record (``scope``,
        ``job.idempotency_key``, ``job.request_hash``, ``job.id``, created
        ``now``, ``expires_at``) then, if that record won, :meth:`insert_job`
        of ``job`` do, without the record model or a coroutine per step.
        Returns ``None`` when the key was claimed and the job inserted, else
        the live record (nothing written). The caller has checked the key
        and that ``now`` is aware UTC; ``request_json`` is ``_dump(job.request)``
        when it has it (the fingerprint's text), ``ttl`` ``expires_at - now`` when
        it has it (a store may use it). tests/storage holds it equal to the two
        primitives on both SQL backends. Not part of the store protocol: a
        host's backend gets the primitives, one at a time.
        """
        self._check_open()
        ts = self._ts
        data = job.__dict__
        key = data["idempotency_key"]
        until = ts(expires_at)
        stamp = ts(now)  # last: the job's times are this same now (_ts's memo)
        won = await self._one(
            CLAIM_KEY, (scope, key, data["request_hash"], data["id"], stamp, until, stamp)
        )
        if won is None:
            live = await self._one(LIVE_KEY, (scope, key))
            if live is not None:
                return self._record(live)
            # Pruned between the two statements (possible only on PostgreSQL):
            # the primitive claims again, and settles who won.
            proposed = IdempotencyRecord(
                scope=scope,
                key=key,
                request_hash=data["request_hash"],
                job_id=data["id"],
                created_at=now,
                expires_at=expires_at,
            )
            existing = await self.claim_idempotency(proposed, now=now)
            if existing.job_id != proposed.job_id:
                return existing
        if await self._exec(INSERT_JOB, self._job_params(job, request_json)) != 1:
            raise ValueError(f"a job with id {job.id!r} already exists")
        return None

    async def get_job(self, job_id: str, *, for_update: bool = False) -> Job | None:
        """The job, or ``None``. ``for_update`` locks its row until the transaction ends."""
        self._check_open()
        lock = self.for_update if for_update else ""
        row = await self._one(
            f"SELECT {_JOB_COLUMNS} FROM chatsvg_jobs WHERE id = ?{lock}", (job_id,)
        )
        return None if row is None else self._job(row)

    async def update_job(self, job: Job, *, expected_version: int) -> bool:
        """Compare-and-set on ``version``; return whether the row was written."""
        self._check_open()
        params = self._job_params(job)
        changed = await self._exec(
            "UPDATE chatsvg_jobs SET owner = ?, status = ?, attempt = ?, max_attempts = ?, "
            "run_at = ?, lease_expires_at = ?, lease_token = ?, worker_id = ?, request = ?, "
            "request_hash = ?, idempotency_key = ?, last_error = ?, result_ref = ?, "
            "version = ?, updated_at = ? "
            "WHERE id = ? AND version = ?",
            (*params[1:15], params[16], job.id, expected_version),
        )
        return changed == 1

    async def next_due_job(self, now: datetime) -> Job | None:
        """Lock and return one due QUEUED job (oldest ``run_at`` first), skipping locked rows."""
        self._check_open()
        row = await self._one(
            f"SELECT {_JOB_COLUMNS} FROM chatsvg_jobs "
            "WHERE status = 'queued' AND run_at <= ? "
            f"ORDER BY run_at, created_at, id LIMIT 1{self.skip_locked}",
            (self._ts(utc(now)),),
        )
        return None if row is None else self._job(row)

    async def claim_due(
        self,
        now: datetime,
        *,
        worker_id: str,
        lease_expires_at: datetime,
        job_id: str | None = None,
    ) -> Job | None:
        """Claim the next due job in one ``UPDATE ... RETURNING`` (``JobClaimer``).

        With ``job_id``, that job only, if the guard lets it be claimed now
        (``None`` otherwise). The subquery picks the row ``next_due_job``
        would (PostgreSQL: ``FOR UPDATE SKIP LOCKED``); the outer ``WHERE``
        repeats the guard, so a row changed meanwhile is not claimed.
        """
        if self._finished:  # _check_open, without its call on the hot path
            self._check_open()
        # utc() only where it has work (two calls fewer per claim).
        if now.tzinfo is not UTC:
            now = utc(now)
        if lease_expires_at.tzinfo is not UTC:
            lease_expires_at = utc(lease_expires_at)
        stamp = self._ts(now)
        if job_id is None:
            row = await self._one(
                _claim_next_sql(self.skip_locked),
                (self._ts(lease_expires_at), worker_id, stamp, stamp, stamp),
            )
        else:
            row = await self._one(
                _CLAIM_ONE, (self._ts(lease_expires_at), worker_id, stamp, job_id, stamp)
            )
        return None if row is None else self._claimed(row, worker_id, lease_expires_at, now)

    async def succeed_job(
        self, job_id: str, *, token: int, now: datetime, result: JobResult
    ) -> tuple[Job, JobResult] | None:
        """Succeed the job under ``token`` and store its result (``JobFinisher``).

        The job's ``UPDATE ... RETURNING`` first: a refused transition writes
        no result. Dialects override this to send both in one statement.
        """
        self._check_open()
        row = await self._one(
            f"UPDATE chatsvg_jobs SET {SUCCEED_SET} WHERE {SUCCEED_GUARD} RETURNING {_JOB_COLUMNS}",
            (self._ts(utc(now)), job_id, token),
        )
        if row is None:
            return None
        return self._job(row), await self.put_result(result)

    async def succeed_held(
        self, job_id: str, *, token: int, now: datetime, result: JobResult
    ) -> tuple[int, JobResult] | None:
        """:meth:`succeed_job` returning only the new ``version`` (``HeldJobFinisher``).

        The caller holds the rest of the job: the row is not decoded.
        """
        self._check_open()
        row = await self._one(SUCCEED_HELD, (self._ts(utc(now)), job_id, token))
        if row is None:
            return None
        return int(row[0]), await self.put_result(result)

    async def expired_jobs(self, now: datetime, *, limit: int) -> Sequence[Job]:
        """RUNNING jobs whose lease ended at or before ``now`` (not locked)."""
        self._check_open()
        rows = await self._all(
            f"SELECT {_JOB_COLUMNS} FROM chatsvg_jobs "
            "WHERE status = 'running' AND lease_expires_at <= ? "
            "ORDER BY lease_expires_at, id LIMIT ?",
            (self._ts(utc(now)), max(0, limit)),
        )
        return [self._job(r) for r in rows]

    async def list_jobs(
        self,
        *,
        owner: str | None = None,
        status: JobStatus | None = None,
        limit: int = 100,
        before: datetime | None = None,
        before_id: str | None = None,
    ) -> Sequence[Job]:
        """Jobs, newest ``created_at`` first (ties: ``id`` descending); ``before`` pages."""
        self._check_open()
        where: list[str] = []
        params: list[Any] = []
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        if status is not None:
            where.append("status = ?")
            params.append(JobStatus(status).value)
        if before is not None:
            where.append(self._older(before_id))
            params.extend(self._cursor(before, before_id))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self._all(
            f"SELECT {_JOB_COLUMNS} FROM chatsvg_jobs{clause} "
            "ORDER BY created_at DESC, id DESC LIMIT ?",
            (*params, max(0, limit)),
        )
        return [self._job(r) for r in rows]

    async def purge_jobs(self, *, before: datetime, now: datetime, limit: int) -> int:
        """Delete up to ``limit`` purgeable jobs and their results; see :class:`JobPurger`."""
        self._check_open()
        rows = await self._all(
            _PURGEABLE + f" ORDER BY j.updated_at, j.id LIMIT ?{self.skip_locked}",
            (self._ts(utc(before)), self._ts(utc(now)), max(0, limit)),
        )
        ids = [str(r[0]) for r in rows]
        if not ids:
            return 0
        marks = ", ".join("?" for _ in ids)
        await self._exec(f"DELETE FROM chatsvg_results WHERE job_id IN ({marks})", ids)
        return await self._exec(f"DELETE FROM chatsvg_jobs WHERE id IN ({marks})", ids)

    async def put_result(self, result: JobResult) -> JobResult:
        """Store a job's result once; a second put returns the first one unchanged."""
        self._check_open()
        if await self._exec(INSERT_RESULT, self._result_params(result)) == 1:
            return result
        return await self._first_result(result)

    def _result_params(self, result: JobResult) -> tuple[Any, ...]:
        """``INSERT_RESULT``'s parameters for ``result``, read from its own dict."""
        data = result.__dict__
        metadata = data["metadata"]
        # The text its maker handed over with the dict (the engine's finish), or encoded here.
        text = take_json(metadata)
        return (data["job_id"], data["svg"], _dump(metadata) if text is None else text,
                self._ts(data["created_at"]))  # fmt: skip

    async def _first_result(self, result: JobResult) -> JobResult:
        """The result already stored for ``result``'s job, which ``INSERT_RESULT`` kept."""
        stored = await self.get_result(result.job_id)
        if stored is None:  # pragma: no cover - a result is never deleted
            raise StorageError("result vanished after a conflicting insert", job_id=result.job_id)
        return stored

    async def get_result(self, job_id: str) -> JobResult | None:
        """The stored result of a job, or ``None``."""
        self._check_open()
        row = await self._one(
            "SELECT job_id, svg, metadata, created_at FROM chatsvg_results WHERE job_id = ?",
            (job_id,),
        )
        if row is None:
            return None
        return JobResult(
            job_id=row[0], svg=row[1], metadata=json.loads(row[2]), created_at=self._dt(row[3])
        )

    # --- idempotency ----------------------------------------------------------

    async def claim_idempotency(
        self, record: IdempotencyRecord, *, now: datetime
    ) -> IdempotencyRecord:
        """Make ``record`` the live one for (scope, key) unless a live one exists.

        One upsert: insert, or replace the stored record only if it expired
        (the ``WHERE`` of ``DO UPDATE``). On PostgreSQL under READ COMMITTED a
        concurrent first claim waits on the other's uncommitted row and then
        sees the conflict; a concurrent replacement of an expired record
        re-checks the ``WHERE`` against the winner's committed row, which is
        live, and so updates nothing. Either way the loser reads the winner.
        """
        self._check_open()
        params = (
            record.scope,
            record.key,
            record.request_hash,
            record.job_id,
            self._ts(record.created_at),
            self._ts(record.expires_at),
        )
        while True:
            row = await self._one(CLAIM_KEY, (*params, self._ts(utc(now))))
            if row is not None:
                return record
            live = await self._one(LIVE_KEY, (record.scope, record.key))
            if live is not None:
                return self._record(live)
            # Pruned between the two statements (possible only on PostgreSQL,
            # where each statement sees the latest commits): claim again.

    async def prune_idempotency(self, now: datetime, *, limit: int) -> int:
        """Delete up to ``limit`` records expired at or before ``now``; return how many."""
        raise NotImplementedError

    # --- ledger -----------------------------------------------------------------

    async def lock_account(self, owner: str, *, create: bool = False) -> bool:
        """Lock the owner's account row until the transaction ends; return whether it exists."""
        self._check_open()
        select = f"SELECT 1 FROM chatsvg_accounts WHERE owner = ?{self.for_update}"
        if await self._one(select, (owner,)) is not None:
            return True
        if not create:
            return False
        # A concurrent creator may win the insert; the SELECT after it then
        # waits for that transaction and locks the committed row.
        await self._exec(
            "INSERT INTO chatsvg_accounts (owner, balance, created_at) VALUES (?, 0, ?) "
            "ON CONFLICT (owner) DO NOTHING",
            (owner, self._ts(self._now())),
        )
        return await self._one(select, (owner,)) is not None

    def _now(self) -> datetime:
        raise NotImplementedError

    async def insert_entry(self, entry: LedgerEntry) -> LedgerEntry:
        """Append ``entry`` (and move the stored balance); a (kind, ref) seen before wins."""
        if await self._append_entry(self._entry_params(entry)):
            return entry
        return await self._first_entry(entry)

    def _entry_params(self, entry: LedgerEntry) -> tuple[Any, ...]:
        """``insert_entry``'s checks, and the entry's columns in ``_ENTRY_COLUMNS`` order."""
        if self._finished:  # _check_open, without its call on the hot path
            self._check_open()
        # Read from the entry's own dict: a pydantic attribute read costs
        # several times a dict's subscript.
        data = entry.__dict__
        amount = data["amount"]
        if not INT64_MIN <= amount <= INT64_MAX:
            raise InvalidAmount("amount does not fit a signed 64-bit integer", amount=str(amount))
        # The stored balance moves in the same transaction as the entry, so it
        # always equals the sum of the entries (the tests check it).
        return (
            data["id"],
            data["owner"],
            _KIND_TEXT[data["kind"]],
            amount,
            data["ref"],
            data["memo"],
            self._ts(data["created_at"]),
        )

    async def _first_entry(self, entry: LedgerEntry) -> LedgerEntry:
        """The entry another write of ``entry``'s (kind, ref) stored first (the insert kept it)."""
        assert entry.ref is not None  # a NULL ref never conflicts
        existing = await self.find_entry(entry.kind, entry.ref)
        if existing is None:  # pragma: no cover - entries are never deleted
            raise StorageError("ledger entry vanished after a conflicting insert", ref=entry.ref)
        return existing

    async def find_entry(self, kind: EntryKind, ref: str) -> LedgerEntry | None:
        """The entry of this kind for this reference, or ``None``."""
        self._check_open()
        row = await self._one(
            f"SELECT {_ENTRY_COLUMNS} FROM chatsvg_ledger WHERE kind = ? AND ref = ?",
            (EntryKind(kind).value, ref),
        )
        return None if row is None else self._entry(row)

    async def balance(self, owner: str) -> int:
        """The sum of the owner's entry amounts (kept as the account's stored balance)."""
        self._check_open()
        row = await self._one("SELECT balance FROM chatsvg_accounts WHERE owner = ?", (owner,))
        return 0 if row is None else int(row[0])

    async def sum_entries(
        self, owner: str, kinds: Sequence[EntryKind], *, since: datetime, until: datetime
    ) -> int:
        """Sum of the owner's amounts of ``kinds`` with ``since <= created_at < until``."""
        self._check_open()
        values = sorted({EntryKind(k).value for k in kinds})
        if not values:
            return 0
        marks = ", ".join("?" * len(values))
        row = await self._one(
            "SELECT COALESCE(SUM(amount), 0) FROM chatsvg_ledger "
            f"WHERE owner = ? AND created_at >= ? AND created_at < ? AND kind IN ({marks})",
            (owner, self._ts(utc(since)), self._ts(utc(until)), *values),
        )
        return 0 if row is None else int(row[0])

    async def usage(self, owner: str, *, since: datetime, until: datetime) -> int:
        """Credits spent in ``[since, until)``: charges and reservations not given back.

        The account's cap counter when it holds this window (schema 6), else
        ``USAGE``, whose ``NOT EXISTS`` probe is a lookup in the (kind, ref)
        unique index. Nothing is stored: the caller may not hold the account
        lock (``spend_state`` stores a new window, holding it).
        """
        self._check_open()
        since_ts, until_ts = self._ts(utc(since)), self._ts(utc(until))
        row = await self._one(USAGE_OF, (since_ts, until_ts, owner, since_ts, until_ts, owner))
        return 0 if row is None or row[0] is None else int(row[0])

    async def spend_state(
        self,
        owner: str,
        kind: EntryKind,
        other: EntryKind,
        ref: str,
        window: tuple[datetime, datetime] | None,
    ) -> SpendState:
        """What a charge or reservation is decided on, in one statement (``SpendReader``).

        The account row (locked, when the dialect locks rows), the entry this
        reference already has, the other mode's existence and, with a window,
        the usage of :meth:`usage`: the fine primitives' SQL, as subqueries.
        The usage is the account's cap counter when it holds ``window``; for
        another window it is summed in the same statement and stored (one
        more statement, once per window).
        """
        if self._finished:  # _check_open, without its call on the hot path
            self._check_open()
        kind_text = _KIND_TEXT.get(kind) or EntryKind(kind).value
        other_text = _KIND_TEXT.get(other) or EntryKind(other).value
        if window is None:
            params: tuple[Any, ...] = (other_text, ref, owner, kind_text, ref)
            row = await self._one(_SPEND_STATE, params)
            assert row is not None  # one row, whatever exists
            used = None
        else:
            last = _LAST_WINDOW_TS  # _window_ts's memo, read inline (a call less per charge)
            if last[0] is window and last[1] is type(self):
                since, until = last[2]
            else:
                since, until = self._window_ts(window)
            params = (other_text, ref, since, until, owner, since, until, owner, kind_text, ref)
            row = await self._one(_SPEND_STATE_USAGE, params)
            assert row is not None  # one row, whatever exists
            used = row[3]
            if used is None:  # the stored window is this one (so the account exists): its counter
                used = row[4]
                if row[1] is None:
                    # The usual spend (an account, no entry for this reference yet).
                    return spend_state_of(True, None, bool(row[2]), int(row[0]), int(used))
            elif row[0] is not None:
                # Another window (a new day, another boundary, an account from
                # before schema 6): summed once, stored for the charges after
                # it. This transaction holds the account lock (SQLite: the
                # write lock), so no entry of the owner commits between the
                # sum and the store.
                await self._exec(CAP_STORE, (since, until, used, owner))
        balance = row[0]
        return spend_state_of(
            balance is not None,
            None if row[1] is None else await self.find_entry(kind, ref),
            bool(row[2]),
            0 if balance is None else int(balance),
            None if used is None else int(used),
        )

    def _window_ts(self, window: tuple[datetime, datetime]) -> tuple[Any, Any]:
        # The ledger hands the same window tuple for every charge of a day
        # (DayBoundary.window's memo), so its two stamps are remembered by
        # identity, as _ts remembers the last datetime.
        global _LAST_WINDOW_TS
        last = _LAST_WINDOW_TS
        if last[0] is window and last[1] is type(self):
            return last[2]
        stamps = (self._ts(utc(window[0])), self._ts(utc(window[1])))
        _LAST_WINDOW_TS = (window, type(self), stamps)
        return stamps

    def _spend_state(
        self,
        kind: EntryKind,
        ref: str,
        balance: int | None,
        facts: Sequence[Any],
        with_usage: bool,
    ) -> SpendState:
        """A :class:`SpendState` from the account's balance (``None``: no account) and
        ``(seen id, owner, amount, memo, created_at, other exists, usage)``."""
        seen = None
        if facts[0] is not None:
            seen = self._entry(
                (facts[0], facts[1], _KIND_TEXT.get(kind) or EntryKind(kind).value, facts[2], ref,
                 facts[3], facts[4])
            )  # fmt: skip
        return spend_state_of(
            balance is not None,
            seen,
            bool(facts[5]),
            0 if balance is None else int(balance),
            int(facts[6]) if with_usage else None,
        )

    async def entries(
        self,
        owner: str,
        *,
        limit: int = 100,
        before: datetime | None = None,
        before_id: str | None = None,
    ) -> Sequence[LedgerEntry]:
        """The owner's entries, newest first (ties: ``id`` descending); ``before`` pages."""
        self._check_open()
        params: list[Any] = [owner]
        clause = ""
        if before is not None:
            clause = f" AND {self._older(before_id)}"
            params.extend(self._cursor(before, before_id))
        rows = await self._all(
            f"SELECT {_ENTRY_COLUMNS} FROM chatsvg_ledger WHERE owner = ?{clause} "
            "ORDER BY created_at DESC, id DESC LIMIT ?",
            (*params, max(0, limit)),
        )
        return [self._entry(r) for r in rows]
