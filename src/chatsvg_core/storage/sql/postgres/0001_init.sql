-- chatsvg-core schema, version 1 (PostgreSQL 12+).
-- Runs inside the schema chosen by search_path; JSON payloads are TEXT written
-- by the library (exact round trip, no jsonb normalisation). Keys compare and
-- sort with COLLATE "C" (code-point order, as in SQLite and Python), whatever
-- the database's collation, so paging cursors mean the same on every backend.

CREATE TABLE chatsvg_jobs (
    id               text COLLATE "C" NOT NULL PRIMARY KEY,
    owner            text COLLATE "C" NOT NULL,
    status           text        NOT NULL
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    attempt          integer     NOT NULL CHECK (attempt >= 0),
    max_attempts     integer     NOT NULL CHECK (max_attempts >= 1),
    run_at           timestamptz NOT NULL,
    lease_expires_at timestamptz,
    lease_token      integer,
    worker_id        text,
    request          text        NOT NULL,
    request_hash     text        NOT NULL,
    idempotency_key  text,
    last_error       text,
    result_ref       text,
    version          bigint      NOT NULL CHECK (version >= 0),
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    CHECK ((status = 'running') = (lease_token IS NOT NULL)),
    CHECK (attempt <= max_attempts)
);
-- The claim query (FOR UPDATE SKIP LOCKED): due QUEUED jobs, oldest run_at first.
CREATE INDEX chatsvg_jobs_due ON chatsvg_jobs (run_at, id) WHERE status = 'queued';
-- Recovery: RUNNING jobs whose lease lapsed.
CREATE INDEX chatsvg_jobs_lease ON chatsvg_jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX chatsvg_jobs_owner ON chatsvg_jobs (owner, created_at);
CREATE INDEX chatsvg_jobs_created ON chatsvg_jobs (created_at);

CREATE TABLE chatsvg_idempotency (
    scope        text COLLATE "C" NOT NULL,
    idem_key     text COLLATE "C" NOT NULL,
    request_hash text        NOT NULL,
    job_id       text COLLATE "C" NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
CREATE INDEX chatsvg_idempotency_expiry ON chatsvg_idempotency (expires_at);

-- One row per owner: the row lock_account takes with SELECT ... FOR UPDATE,
-- and the running balance, kept equal to the sum of the owner's entries by
-- the same transaction that appends an entry.
CREATE TABLE chatsvg_accounts (
    owner      text COLLATE "C" NOT NULL PRIMARY KEY,
    balance    bigint      NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL
);

CREATE TABLE chatsvg_ledger (
    seq        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         text COLLATE "C" NOT NULL UNIQUE,
    owner      text COLLATE "C" NOT NULL,
    kind       text        NOT NULL CHECK (kind IN
               ('grant', 'charge', 'refund', 'adjustment', 'reserve', 'capture', 'release')),
    amount     bigint      NOT NULL,
    ref        text COLLATE "C",
    memo       text,
    created_at timestamptz NOT NULL
);
-- Exactly once by construction: one entry per (kind, ref) when ref is set
-- (the target of INSERT ... ON CONFLICT (kind, ref) WHERE ref IS NOT NULL).
CREATE UNIQUE INDEX chatsvg_ledger_kind_ref ON chatsvg_ledger (kind, ref) WHERE ref IS NOT NULL;
-- Daily usage (caps) and history pages; covering, so sums are index-only scans.
CREATE INDEX chatsvg_ledger_owner_time ON chatsvg_ledger (owner, created_at, kind, amount, ref);

CREATE TABLE chatsvg_results (
    job_id     text COLLATE "C" NOT NULL PRIMARY KEY,
    svg        text        NOT NULL,
    metadata   text        NOT NULL,
    created_at timestamptz NOT NULL
);
