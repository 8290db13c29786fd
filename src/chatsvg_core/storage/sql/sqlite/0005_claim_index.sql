-- chatsvg-core schema, version 5 (SQLite): the due-jobs index in the claim's
-- order (run_at, created_at, id), the order the storage protocol promises.
-- Version 1 indexed (run_at, id), so SQLite sorted the due jobs sharing the
-- first one's run_at in a temporary B-tree on every claim: cheap when each
-- job has its own run_at, a read of the whole group when many share one.
-- (PostgreSQL's version 5 also tunes autovacuum; SQLite rewrites rows in
-- place and has no dead entries to clean.)
DROP INDEX chatsvg_jobs_due;
CREATE INDEX chatsvg_jobs_due ON chatsvg_jobs (run_at, created_at, id) WHERE status = 'queued';
