-- chatsvg-core schema, version 7 (SQLite): the jobs and ledger tables' CHECK
-- constraints on status and kind written as OR-chains instead of IN lists.
-- The same rule (NULL passes both forms; the columns are NOT NULL anyway), at
-- a fraction of the cost: SQLite evaluates an IN list of more than two
-- constants through an ephemeral table (a temporary b-tree opened, filled and
-- closed) every time the constraint runs, which is every job insert, every
-- job update that sets status and every ledger insert; ~35 k CPU instructions
-- a statement, 0.14 M of a job's 1.1 M (issue 15, session 15).
--
-- SQLite cannot alter a constraint in place, so both tables are rebuilt the
-- documented way (create, copy, drop, rename, re-index) in the migration's
-- one transaction: rows, rowids, the ledger's seq values and its
-- AUTOINCREMENT counter are kept; indexes are recreated as version 6 had them.
CREATE TABLE chatsvg_jobs_v7 (
    id               TEXT    NOT NULL PRIMARY KEY,
    owner            TEXT    NOT NULL,
    status           TEXT    NOT NULL
                     CHECK (status = 'queued' OR status = 'running'
                            OR status = 'succeeded' OR status = 'failed'),
    attempt          INTEGER NOT NULL CHECK (attempt >= 0),
    max_attempts     INTEGER NOT NULL CHECK (max_attempts >= 1),
    run_at           INTEGER NOT NULL,
    lease_expires_at INTEGER,
    lease_token      INTEGER,
    worker_id        TEXT,
    request          TEXT    NOT NULL,
    request_hash     TEXT    NOT NULL,
    idempotency_key  TEXT,
    last_error       TEXT,
    result_ref       TEXT,
    version          INTEGER NOT NULL CHECK (version >= 0),
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    trace_context    TEXT,
    CHECK ((status = 'running') = (lease_token IS NOT NULL)),
    CHECK (attempt <= max_attempts)
);
INSERT INTO chatsvg_jobs_v7 (
    rowid, id, owner, status, attempt, max_attempts, run_at, lease_expires_at, lease_token,
    worker_id, request, request_hash, idempotency_key, last_error, result_ref, version,
    created_at, updated_at, trace_context
)
SELECT
    rowid, id, owner, status, attempt, max_attempts, run_at, lease_expires_at, lease_token,
    worker_id, request, request_hash, idempotency_key, last_error, result_ref, version,
    created_at, updated_at, trace_context
FROM chatsvg_jobs;
DROP TABLE chatsvg_jobs;
ALTER TABLE chatsvg_jobs_v7 RENAME TO chatsvg_jobs;
CREATE INDEX chatsvg_jobs_due ON chatsvg_jobs (run_at, created_at, id) WHERE status = 'queued';
CREATE INDEX chatsvg_jobs_lease ON chatsvg_jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX chatsvg_jobs_owner ON chatsvg_jobs (owner, created_at);
CREATE INDEX chatsvg_jobs_created ON chatsvg_jobs (created_at);

CREATE TABLE chatsvg_ledger_v7 (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL UNIQUE,
    owner      TEXT    NOT NULL,
    kind       TEXT    NOT NULL
               CHECK (kind = 'grant' OR kind = 'charge' OR kind = 'refund'
                      OR kind = 'adjustment' OR kind = 'reserve' OR kind = 'capture'
                      OR kind = 'release'),
    amount     INTEGER NOT NULL,
    ref        TEXT,
    memo       TEXT,
    created_at INTEGER NOT NULL
);
INSERT INTO chatsvg_ledger_v7 (seq, id, owner, kind, amount, ref, memo, created_at)
SELECT seq, id, owner, kind, amount, ref, memo, created_at FROM chatsvg_ledger;
-- The counter as it was (it can be past the highest seq kept), renamed with the table.
DELETE FROM sqlite_sequence WHERE name = 'chatsvg_ledger_v7';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'chatsvg_ledger_v7', seq FROM sqlite_sequence WHERE name = 'chatsvg_ledger';
DROP TABLE chatsvg_ledger;
ALTER TABLE chatsvg_ledger_v7 RENAME TO chatsvg_ledger;
CREATE UNIQUE INDEX chatsvg_ledger_kind_ref ON chatsvg_ledger (kind, ref) WHERE ref IS NOT NULL;
CREATE INDEX chatsvg_ledger_owner_time ON chatsvg_ledger (owner, created_at, kind, amount, ref);
