-- chatsvg-core schema, version 5 (PostgreSQL): the due-jobs index in the
-- claim's order, and vacuum settings for a table that every job churns.
--
-- The claim orders due jobs by (run_at, created_at, id), the order the
-- storage protocol promises, but version 1 indexed (run_at, id). The planner
-- then read every due job to sort them (a bitmap scan and a sort, or an
-- incremental sort over jobs sharing a run_at), so each claim cost time in
-- proportion to the backlog: 3,000 index entries per claim with 3,000 jobs
-- queued. In the claim's order the claim reads its first live entry and stops.
-- The drop comes first and locks the table (ACCESS EXCLUSIVE, to the commit):
-- building first would hold SHARE and then wait for the exclusive lock behind
-- a claim that had read the table and now waits on our SHARE to write, a
-- deadlock. Queries on the table wait for the build: one scan of the table.
DROP INDEX chatsvg_jobs_due;
CREATE INDEX chatsvg_jobs_due ON chatsvg_jobs (run_at, created_at, id) WHERE status = 'queued';

-- Every claim leaves its job's old entry in chatsvg_jobs_due behind (status
-- is in the index's predicate, so no transition is a HOT update), and the
-- claims that follow step over those dead entries, about 6 index pages per
-- 1,000, until VACUUM removes them. With the defaults, autovacuum waits for
-- 20% of the table to be dead, which on a table of a million finished jobs is
-- some 100,000 dead entries for every claim to walk; and a VACUUM that finds
-- dead rows on under 2% of the table's pages skips the indexes altogether
-- (PostgreSQL 14+), leaving them there. So: vacuum after 1% (plus 1,000
-- rows) and always clean the indexes. Hosts may override either per table
-- (ALTER TABLE chatsvg_jobs SET / RESET); see docs/deploy.md.
ALTER TABLE chatsvg_jobs SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02,
    vacuum_index_cleanup = on
);
