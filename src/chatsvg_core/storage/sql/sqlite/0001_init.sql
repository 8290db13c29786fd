-- chatsvg-core schema, version 1 (SQLite 3.35+).
-- Times are INTEGER microseconds since the Unix epoch (UTC): exact, and they
-- sort and compare as numbers. JSON payloads are TEXT written by the library.

CREATE TABLE chatsvg_jobs (
    id               TEXT    NOT NULL PRIMARY KEY,
    owner            TEXT    NOT NULL,
    status           TEXT    NOT NULL
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
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
    CHECK ((status = 'running') = (lease_token IS NOT NULL)),
    CHECK (attempt <= max_attempts)
);
-- The claim query: due QUEUED jobs, oldest run_at first.
CREATE INDEX chatsvg_jobs_due ON chatsvg_jobs (run_at, id) WHERE status = 'queued';
-- Recovery: RUNNING jobs whose lease lapsed.
CREATE INDEX chatsvg_jobs_lease ON chatsvg_jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX chatsvg_jobs_owner ON chatsvg_jobs (owner, created_at);
CREATE INDEX chatsvg_jobs_created ON chatsvg_jobs (created_at);

CREATE TABLE chatsvg_idempotency (
    scope        TEXT    NOT NULL,
    idem_key     TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    job_id       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
CREATE INDEX chatsvg_idempotency_expiry ON chatsvg_idempotency (expires_at);

-- One row per owner: the row every balance-changing transaction locks
-- (SQLite locks the whole database for a write transaction anyway) and the
-- running balance, kept equal to the sum of the owner's entries by the same
-- transaction that appends an entry.
CREATE TABLE chatsvg_accounts (
    owner      TEXT    NOT NULL PRIMARY KEY,
    balance    INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

CREATE TABLE chatsvg_ledger (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL UNIQUE,
    owner      TEXT    NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN
               ('grant', 'charge', 'refund', 'adjustment', 'reserve', 'capture', 'release')),
    amount     INTEGER NOT NULL,
    ref        TEXT,
    memo       TEXT,
    created_at INTEGER NOT NULL
);
-- Exactly once by construction: one entry per (kind, ref) when ref is set.
CREATE UNIQUE INDEX chatsvg_ledger_kind_ref ON chatsvg_ledger (kind, ref) WHERE ref IS NOT NULL;
-- Daily usage (caps) and history pages; covering, so sums never touch the table.
CREATE INDEX chatsvg_ledger_owner_time ON chatsvg_ledger (owner, created_at, kind, amount, ref);

CREATE TABLE chatsvg_results (
    job_id     TEXT    NOT NULL PRIMARY KEY,
    svg        TEXT    NOT NULL,
    metadata   TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
